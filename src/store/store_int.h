/* store internals shared by the entity files; not for other modules. */
#ifndef SLIPWAY_STORE_INT_H
#define SLIPWAY_STORE_INT_H

#include <stddef.h>
#include <sqlite3.h>

#include "store/store.h"

/* Statements a thread keeps prepared. The program has fewer distinct statements than this; past
 * it the oldest statement that is not being stepped is dropped, never one an outer loop steps. */
#define STORE_STMT_CACHE 128
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
/* store_init, with the migrations applied only up to schema `version` (a database that already
 * has a later one is refused): the tests make the database of an older Slipway with it. */
int store_init_version(const char *path, int version);
/* The users columns, prefixed with "u.", in the order store_user_read() reads them. */
#define STORE_USER_COLS_U "u.id, u.email, u.name, u.is_admin, u.active, u.created_ms"
/* Reads a user from the row's columns starting at `col`. */
void store_user_read(sqlite3_stmt *st, int col, struct store_user *u);

#endif
