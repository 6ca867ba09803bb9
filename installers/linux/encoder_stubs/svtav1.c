/* Stand-in for libSvtAv1Enc in the Linux bundle: the SVT-AV1 encoder, which the app never uses
 * (it encodes H.264 with libx264), is 7 MB. libavcodec links it and imports the functions below.
 * FFmpeg's libsvtav1 encoder first calls svt_av1_enc_init_handle() and stops with "Error
 * initializing encoder handle" when it fails, which it always does here; its close calls the
 * others only with a handle, which is never made. installers/linux/build.sh compiles it, checks
 * that an AV1 (libsvtav1) encode fails cleanly and H.264 still works, and keeps the real library
 * otherwise. */
#include <stddef.h>
#include <stdint.h>

typedef int32_t svt_error; /* EbErrorType */
#define UNAVAILABLE ((svt_error)0x80001000) /* EB_ErrorInsufficientResources */

svt_error svt_av1_enc_init_handle(void **handle, void *app_data, void *config) {
    (void)app_data;
    (void)config;
    if (handle) *handle = NULL;
    return UNAVAILABLE;
}
svt_error svt_av1_enc_deinit_handle(void *handle) { (void)handle; return UNAVAILABLE; }
svt_error svt_av1_enc_deinit(void *handle) { (void)handle; return UNAVAILABLE; }
svt_error svt_av1_enc_init(void *handle) { (void)handle; return UNAVAILABLE; }
svt_error svt_av1_enc_set_parameter(void *handle, void *config) { (void)handle; (void)config; return UNAVAILABLE; }
svt_error svt_av1_enc_parse_parameter(void *config, const char *name, const char *value) {
    (void)config; (void)name; (void)value;
    return UNAVAILABLE;
}
svt_error svt_av1_enc_stream_header(void *handle, void **header) {
    (void)handle;
    if (header) *header = NULL;
    return UNAVAILABLE;
}
svt_error svt_av1_enc_stream_header_release(void *header) { (void)header; return UNAVAILABLE; }
svt_error svt_av1_enc_send_picture(void *handle, void *picture) { (void)handle; (void)picture; return UNAVAILABLE; }
svt_error svt_av1_enc_get_packet(void *handle, void **packet, uint8_t done) {
    (void)handle; (void)done;
    if (packet) *packet = NULL;
    return UNAVAILABLE;
}
void svt_av1_enc_release_out_buffer(void **packet) { if (packet) *packet = NULL; }
svt_error svt_av1_enc_get_stream_info(void *handle, uint32_t type, void *info) {
    (void)handle; (void)type; (void)info;
    return UNAVAILABLE;
}
int svt_add_metadata(void *picture, uint32_t type, const uint8_t *data, size_t size) {
    (void)picture; (void)type; (void)data; (void)size;
    return -1;
}
void svt_metadata_array_free(void *metadata) { (void)metadata; }
