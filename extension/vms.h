/*
 * vms.h — what the module's C files share.
 */
#ifndef VMS_H
#define VMS_H

extern char *vms_secret_key_file;

extern char *vms_secret_decrypt_bytes(const unsigned char *p, int n, const char *context, int context_len);

extern Oid	vms_rel_owner(Oid relid);

#endif
