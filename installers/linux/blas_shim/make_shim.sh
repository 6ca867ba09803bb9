#!/usr/bin/env bash
# Builds the BLAS shim (openblas_shim.c): a library named like OpenCV's OpenBLAS that forwards
# OpenCV's calls to numpy's 64-bit OpenBLAS.
#
#   bash make_shim.sh OPENCV_BLAS_NAME NUMPY_BLAS OUTPUT [extra cc flags]
#
# OPENCV_BLAS_NAME: the file name cv2 needs (libopenblasp-r0-....so), which becomes the SONAME.
# NUMPY_BLAS: the path of numpy's libscipy_openblas64_-....so, linked by its file name. The
# loader looks for it beside the shim (the bundle's _internal/ holds a link to it), in
# numpy.libs/ below it, or in ../numpy.libs (a site-packages folder).
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: make_shim.sh OPENCV_BLAS_NAME NUMPY_BLAS OUTPUT [cc flags]" >&2
  exit 2
fi
opencv_blas_name=$1 numpy_blas=$2 output=$3
shift 3
# shellcheck disable=SC2016  # $ORIGIN is for the loader, not the shell
cc -shared -fPIC -O2 -Wall -Wextra -Werror -fvisibility=hidden "$@" \
  -Wl,-z,defs -Wl,--enable-new-dtags -Wl,-soname,"$opencv_blas_name" \
  -Wl,-rpath,'$ORIGIN:$ORIGIN/numpy.libs:$ORIGIN/../numpy.libs' \
  -o "$output" "$(dirname "$0")/openblas_shim.c" \
  -L"$(dirname "$numpy_blas")" -l:"$(basename "$numpy_blas")"
