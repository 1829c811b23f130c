/* see err.h */
#include "err.h"

const char *duet_strerror(duet_err_t err)
{
    switch (err) {
#define DUET_ERR_MSG_(name, value, msg)                                                      \
    case DUET_##name:                                                                        \
        return msg;
        DUET_ERR_MAP(DUET_ERR_MSG_)
#undef DUET_ERR_MSG_
    }
    return "unknown error";
}

const char *duet_err_name(duet_err_t err)
{
    switch (err) {
#define DUET_ERR_NAME_(name, value, msg)                                                     \
    case DUET_##name:                                                                        \
        return #name;
        DUET_ERR_MAP(DUET_ERR_NAME_)
#undef DUET_ERR_NAME_
    }
    return "EUNKNOWN";
}
