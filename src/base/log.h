/* log — one-line messages on stderr, each with a UTC timestamp and a level.
 * Thread-safe (one write(2) per line). Never pass a credential or secret to these functions.
 */
#ifndef SLIPWAY_BASE_LOG_H
#define SLIPWAY_BASE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Messages below `level` are dropped (default LOG_INFO). */
void log_set_level(enum log_level level);
__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);

#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
