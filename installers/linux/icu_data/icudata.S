/* A libicudata of our own: ICU's common data package as one read-only symbol, the way ICU's
 * own build (genccode/pkgdata) lays it out, so libicuuc finds it exactly as before.
 *
 *   cc -shared -nostdlib -DICU_DATA_SYMBOL=icudt73_dat -DICU_DATA_FILE='"icudt73l.dat"' \
 *      -Wl,-soname,libicudata.so.73 -o libicudata.so.73 icudata.S
 *
 * installers/linux/build.sh builds it from the reduced package (icupkg, keep.txt). */
#if !defined(ICU_DATA_SYMBOL) || !defined(ICU_DATA_FILE)
#error "define ICU_DATA_SYMBOL (e.g. icudt73_dat) and ICU_DATA_FILE (the .dat path, quoted)"
#endif

    .section .rodata
    .globl ICU_DATA_SYMBOL
    .type ICU_DATA_SYMBOL, @object
    /* ICU reads the package's header and tables in place: keep ICU's own 16-byte alignment */
    .balign 16
ICU_DATA_SYMBOL:
    .incbin ICU_DATA_FILE
    .size ICU_DATA_SYMBOL, . - ICU_DATA_SYMBOL

    /* no executable stack */
    .section .note.GNU-stack, "", @progbits
