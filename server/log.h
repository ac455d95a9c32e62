/*
 * log.h — levelled logging to stderr (debug < info < warn < error).
 * The level is tested in the macro, before any argument is formatted (Redis serverLog),
 * and each message goes out as one write(2), so lines from different threads never
 * interleave. No allocation; messages longer than 1 KiB are truncated.
 */
#ifndef SERVER_LOG_H
#define SERVER_LOG_H

typedef enum { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level;

/* The current threshold; set once at startup with log_set_level (read racily after). */
extern log_level log_threshold;

void log_set_level(log_level l);
/* "debug"/"info"/"warn"/"error" (also "warning") → level; 0, or -1 if unknown. */
int log_level_parse(const char *s, log_level *out);
/* The level's name; "?" for an unknown value. */
const char *log_level_name(log_level l);

/* Formats one line "<UTC time> <level> <message>\n" and writes it; never fails loudly. */
void log_write(log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(l, ...)                                                                             \
    do {                                                                                           \
        if ((l) >= log_threshold)                                                                  \
            log_write((l), __VA_ARGS__);                                                           \
    } while (0)
#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif /* SERVER_LOG_H */
