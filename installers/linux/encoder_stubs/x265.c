/* Stand-in for libx265 in the Linux bundle: the HEVC encoder, which the app never uses (it
 * encodes H.264 with libx264), is 20 MB. libavcodec links it and imports one symbol,
 * x265_api_get_<build>. FFmpeg's libx265 encoder calls it for the picture's bit depth, then for
 * 0, and then calls param_alloc() on the table it gets without checking for NULL; so this
 * returns a table whose param_alloc() gives NULL, which FFmpeg reports as "Could not allocate
 * x265 param structure" and the encoder does not open. Only the fields before param_alloc are
 * laid out (x265.h's struct x265_api); FFmpeg reads nothing else before that check.
 * installers/linux/build.sh compiles it, checks that an HEVC encode fails cleanly and H.264
 * still works, and keeps the real library otherwise. X265_BUILD is given by build.sh. */
#include <stddef.h>

#define CONCAT_(a, b) a##b
#define CONCAT(a, b) CONCAT_(a, b)

typedef struct {
    int api_major_version, api_build_number, sizeof_param, sizeof_picture, sizeof_analysis_data,
        sizeof_zone, sizeof_stats, bit_depth;
    const char *version_str, *build_info_str;
    void *(*param_alloc)(void);
} leading_x265_api;

static void *no_param(void) { return NULL; }

static const leading_x265_api unavailable = {
    .api_major_version = 1,
    .api_build_number = X265_BUILD,
    .version_str = "not bundled",
    .build_info_str = "vcam-me bundle: HEVC encoding is not included",
    .param_alloc = no_param,
};

const void *CONCAT(x265_api_get_, X265_BUILD)(int bit_depth) {
    (void)bit_depth;
    return &unavailable;
}
