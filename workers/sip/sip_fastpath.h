/*
 * sip_fastpath.h — the keepalive fast path of the SIP worker.
 *
 * Most of what a GB/T 28181 platform receives is one message: a device's
 * MESSAGE with a MANSCDP Notify whose CmdType is Keepalive.  For a message
 * of exactly the common shape (see sip_fastpath.c) the fields libosip2 and
 * libxml2 would give are read straight from the bytes; anything else —
 * another header, a compact header name, a folded line, an attribute, an
 * entity, a byte outside the few classes allowed — is refused, and the
 * caller parses the message with sip_parse() and manscdp_parse(), which
 * remain the parsers of record.  test/fuzz/fuzz_sip_fastpath.c checks that
 * whenever this accepts, the full path accepts with the same fields and the
 * same answer bytes.  Plain C (no PostgreSQL): it builds into the fuzz
 * target as well.
 */
#ifndef VMS_SIP_FASTPATH_H
#define VMS_SIP_FASTPATH_H

#include "manscdp.h"
#include "sip_msg.h"

/*
 * True: buf (len bytes, NUL-terminated) is a keepalive MESSAGE of the
 * common shape; *in is filled as sip_parse() would (in->msg stays NULL and
 * in->fast is set) and *m as manscdp_parse() would (free it with
 * manscdp_free()).  False: nothing to free, use the full path.
 */
extern bool sip_fastpath_keepalive(const char *buf, size_t len, size_t limit, SipIn *in, Manscdp *m);

#endif
