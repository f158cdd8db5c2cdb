/* fuzz_proto.c - libFuzzer target for the frame decoder and the event
 * re-encoder: whatever the bytes, decoding must end in a request or a clean
 * error, never a crash, an overread or a leak (ASan/UBSan watch).
 *
 * The first byte picks the path: even = msgpack request, odd = JSON
 * request; the event path treats the rest as a msgpack event body, as if a
 * peer node had published it. See docs/operations.md for how to run it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "message.h"
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;

    struct request req;
    struct request_error err;
    enum fmt fmt = (mode & 1) ? FMT_JSON : FMT_MSGPACK;
    if (request_decode(fmt, data, size, &req, &err) == 0) {
        /* A decoded request's strings must lie inside what it claims. */
        if (req.text && req.text_len > REQUEST_NOTICE_MAX)
            __builtin_trap();
        if (strlen(req.id) == 0 || strlen(req.id) > REPLY_ID_MAX)
            __builtin_trap();
        request_release(&req);
    } else if (err.code < 0 || err.code >= ERR_COUNT || !err.message[0]) {
        __builtin_trap(); /* every refusal says why */
    }

    for (int f = 0; f < FMT_COUNT; f++)
        frame_unref(message_event((enum fmt)f, "room", 1, data, size));
    return 0;
}
