/* see outbox.h */
#include "outbox.h"

duet_err_t duet_outbox_count(duet_store_t *st, uint64_t *n)
{
    sqlite3_stmt *s;
    *n = 0;
    duet_err_t err = duet_store_prepare(
        st,
        "SELECT (SELECT count(*) FROM outbox) + "
        "(SELECT count(*) FROM items WHERE mine = 1 AND seq IS NULL AND status = 0)",
        &s);
    if (err != DUET_OK) {
        return err;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *n = (uint64_t)sqlite3_column_int64(s, 0);
    } else {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_inbox_mark_read(duet_store_t *st, const duet_item_t *items, size_t n,
                                uint64_t now_ms)
{
    size_t unread = 0;
    (void)now_ms;
    for (size_t i = 0; i < n; i++) {
        unread += !items[i].mine && items[i].status == DUET_STATUS_UNREAD;
    }
    if (unread == 0) {
        return DUET_OK;
    }
    duet_err_t err = duet_store_begin(st);
    if (err != DUET_OK) {
        return err;
    }
    for (size_t i = 0; i < n && err == DUET_OK; i++) {
        if (!items[i].mine && items[i].status == DUET_STATUS_UNREAD) {
            err = duet_items_set_status(st, items[i].id, DUET_STATUS_READ);
        }
    }
    if (err == DUET_OK) {
        err = duet_store_commit(st);
    }
    if (err != DUET_OK) {
        duet_store_rollback(st);
    }
    return err;
}
