/* URL pieces for the CGI/WSGI environ. */
#ifndef WD_PROTOCOL_URL_H
#define WD_PROTOCOL_URL_H

#include "slice.h"

/* Splits a request target "/a%20b?x=1" into path and query (without the '?'). An absolute-form
 * target "http://host/path?q" yields its path. */
void wd_url_split(const char *uri, size_t n, wd_slice_t *path, wd_slice_t *query);

/* Percent-decodes n bytes of src into dst (which may equal src). Invalid escapes are copied
 * as they are. Returns the decoded length (<= n). */
size_t wd_url_decode(char *dst, const char *src, size_t n);

#endif
