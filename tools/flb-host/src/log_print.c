/* log_print for the test host: formats like Fluent Bit's flb_log_print (a fixed stack
 * buffer, so a plugin that logs from a small coroutine stack is exercised as in the
 * real host) and hands the text to the Rust side. */
#include <stdarg.h>
#include <stdio.h>

static void (*sink)(int level, const char *msg) = 0;

void flb_host_set_log_sink(void (*s)(int, const char *)) { sink = s; }

void flb_host_log_print(int level, const char *file, int line, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    (void)file;
    (void)line;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (sink) {
        sink(level, buf);
    } else {
        fprintf(stderr, "[%d] %s\n", level, buf);
    }
}
