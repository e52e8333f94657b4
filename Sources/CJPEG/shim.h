// libjpeg-turbo (Debian: libjpeg-dev), for reading JPEG images (and writing them in tests).
// libjpeg reports a fatal error by calling error_exit, which by default calls exit(). Here
// error_exit longjmps back into the small C functions below, so the jump never crosses a
// Swift frame: Swift calls these functions and only ever sees a status and a message.
// Warnings (a truncated file, corrupt entropy data) are fatal too: libjpeg would otherwise
// hand back an image padded with grey.
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>

enum {
    tributary_jpeg_ok = 0,
    tributary_jpeg_failed = 1,      // libjpeg's message is in the message buffer
    tributary_jpeg_too_large = 2,   // more pixels than allowed (width and height are set)
};

struct tributary_jpeg_error {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char *message;          // JMSG_LENGTH_MAX bytes, owned by the caller
};

static inline void tributary_jpeg_error_exit(j_common_ptr cinfo) {
    struct tributary_jpeg_error *error = (struct tributary_jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, error->message);
    longjmp(error->jump, 1);
}

static inline void tributary_jpeg_emit_message(j_common_ptr cinfo, int level) {
    // level -1 is a warning (corrupt or truncated data); higher levels are trace output.
    if (level < 0) tributary_jpeg_error_exit(cinfo);
}

/// Points libjpeg's error handling at `error` (fatal errors and warnings longjmp to its
/// `jump`, which the caller sets next) with an empty `message`.
static inline struct jpeg_error_mgr *tributary_jpeg_errors(struct tributary_jpeg_error *error, char *message) {
    message[0] = 0;
    struct jpeg_error_mgr *manager = jpeg_std_error(&error->manager);
    manager->error_exit = tributary_jpeg_error_exit;
    manager->emit_message = tributary_jpeg_emit_message;
    error->message = message;
    return manager;
}

/// Decodes `size` bytes of JPEG. With `pixels` NULL only the header is read: `width`,
/// `height` and `channels` (1 for grayscale files, else 3: libjpeg converts YCbCr and CMYK
/// to RGB) are set. Otherwise `pixels` must hold width × height × channels bytes, as
/// returned by the first call, and receives them row by row from the top-left.
/// A file of more than `max_pixels` pixels gives tributary_jpeg_too_large.
static inline int tributary_jpeg_decode(const unsigned char *data, size_t size, size_t max_pixels,
                                        unsigned char *pixels, size_t *width, size_t *height, int *channels,
                                        char message[JMSG_LENGTH_MAX]) {
    struct jpeg_decompress_struct cinfo;
    struct tributary_jpeg_error error;
    cinfo.err = tributary_jpeg_errors(&error, message);
    if (setjmp(error.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return tributary_jpeg_failed;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    int gray = cinfo.num_components == 1;
    cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    *width = cinfo.image_width;
    *height = cinfo.image_height;
    *channels = gray ? 1 : 3;
    if (cinfo.image_width == 0 || cinfo.image_height == 0 ||
        (size_t)cinfo.image_width > max_pixels / (size_t)cinfo.image_height) {
        jpeg_destroy_decompress(&cinfo);
        return tributary_jpeg_too_large;
    }
    if (pixels == NULL) {
        jpeg_destroy_decompress(&cinfo);
        return tributary_jpeg_ok;
    }
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    if (cinfo.output_width != *width || cinfo.output_height != *height || cinfo.output_components != *channels) {
        snprintf(message, JMSG_LENGTH_MAX, "decoder output %ux%ux%d differs from the header",
                 cinfo.output_width, cinfo.output_height, cinfo.output_components);
        jpeg_destroy_decompress(&cinfo);
        return tributary_jpeg_failed;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return tributary_jpeg_ok;
}

/// Encodes width × height × channels (1 gray or 3 RGB) bytes at `quality` (1…100) into a
/// buffer libjpeg allocates with malloc: the caller frees `*output` when the result is ok.
static inline int tributary_jpeg_encode(const unsigned char *pixels, unsigned width, unsigned height, int channels,
                                        int quality, unsigned char **output, size_t *output_size,
                                        char message[JMSG_LENGTH_MAX]) {
    struct jpeg_compress_struct cinfo;
    struct tributary_jpeg_error error;
    unsigned char *buffer = NULL;
    unsigned long buffer_size = 0;
    *output = NULL;
    *output_size = 0;
    cinfo.err = tributary_jpeg_errors(&error, message);
    if (setjmp(error.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return tributary_jpeg_failed;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &buffer, &buffer_size);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * (size_t)channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *output = buffer;
    *output_size = buffer_size;
    return tributary_jpeg_ok;
}
