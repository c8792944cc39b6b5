/* store internals shared by the entity files; not for other modules. */
#ifndef SLIPWAY_STORE_INT_H
#define SLIPWAY_STORE_INT_H

#include <stddef.h>
#include <sqlite3.h>

#include "store/store.h"

/* This thread's prepared statement for `sql` (a string literal: cached by address), reset and
 * with bindings cleared. NULL on failure (logged). */
sqlite3_stmt *store_stmt(const char *sql);
/* Copies a text column into dst (cap bytes including NUL), truncating; "" for NULL. */
void store_col_text(sqlite3_stmt *st, int col, char *dst, size_t cap);
/* Steps a statement that returns no rows (or whose rows are ignored): 0, -EEXIST on a
 * constraint violation, -EIO otherwise. The statement is reset. */
int store_exec_stmt(sqlite3_stmt *st);
/* Maps the result of sqlite3_step on a single-row query: SQLITE_ROW -> 0, DONE -> -ENOENT. */
int store_row(sqlite3_stmt *st, int rc);
sqlite3 *store_conn(void);

#endif
