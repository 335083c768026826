#!/usr/bin/env python3
"""Create a blob container on Azurite with a SharedKey-signed request.
Usage: az_create_container.py ENDPOINT CONTAINER
  ENDPOINT e.g. http://127.0.0.1:10000/devstoreaccount1  (path-style, as Azurite wants)
Standard library only. Prints the HTTP status; exit 0 on 201 (created) or 409 (exists)."""
import base64, email.utils, hashlib, hmac, http.client, sys, urllib.parse

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

endpoint, container = sys.argv[1].rstrip("/"), sys.argv[2]
u = urllib.parse.urlsplit(f"{endpoint}/{container}")
headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-12-02"}
# VERB, then 11 empty standard headers (Content-Encoding, -Language, -Length (empty when 0),
# -MD5, -Type, Date, If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range),
# then x-ms-* headers sorted, then /account + URL path + sorted query parameters.
to_sign = ("PUT\n" + "\n" * 11
           + "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
           + f"/{ACCOUNT}{u.path}\nrestype:container")
sig = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
conn.request("PUT", u.path + "?restype=container", body=b"",
             headers={**headers, "Authorization": f"SharedKey {ACCOUNT}:{sig}"})
r = conn.getresponse()
body = r.read().decode(errors="replace")
print(r.status)
if r.status not in (201, 409):
    sys.exit(f"create container failed: {r.status} {body}")
