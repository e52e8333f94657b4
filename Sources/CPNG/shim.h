// libpng 1.6 (Debian: libpng-dev), for writing sample grids and reading PNG images.
// Only the simplified API (png_image_*) is used: it catches libpng's errors itself and
// reports them in png_image.message, so no longjmp ever crosses Swift frames.
#include <png.h>

// png.h's format names that are expressions of other macros, which Swift does not import.
static const unsigned int tributary_png_format_gray = PNG_FORMAT_GRAY;
static const unsigned int tributary_png_format_ga = PNG_FORMAT_GA;
static const unsigned int tributary_png_format_rgb = PNG_FORMAT_RGB;
static const unsigned int tributary_png_format_rgba = PNG_FORMAT_RGBA;
static const unsigned int tributary_png_format_linear_y = PNG_FORMAT_LINEAR_Y;
static const unsigned int tributary_png_format_rgb_colormap = PNG_FORMAT_RGB_COLORMAP;
