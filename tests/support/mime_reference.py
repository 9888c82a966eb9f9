#!/usr/bin/python3
"""The attachment rows of SPEC section 14, as Python's own `email` package sees
a message: the independent reference for tests/attachments.rs. Standard
library only.

    mime_reference.py FILE...

Prints one JSON object per file, in order, one per line:
{"file": F, "rows": [...]} or {"file": F, "error": "..."} when the package
raises. Each row: part (the IMAP section), filename, content_type,
disposition, content_id, size and sha256 of the transfer-decoded bytes
(both null for an attached message/rfc822: the package keeps no bytes of
an embedded message, only a re-serialisation of it).

The rule is SPEC section 14's, applied to the package's tree: a leaf is an
attachment unless it is text/plain or text/html without a file name and
without a disposition other than inline; an attached message is one row;
part numbers are RFC 3501's (1 for the only body of a message that is not
multipart, then 2, 2.1, ...). The package is used as it comes
(policy.default: RFC 2231 and RFC 2047 names, base64 and quoted-printable
decoding through get_payload(decode=True)).
"""

import email
import email.policy
import hashlib
import json
import sys


def is_body(part):
    return (
        part.get_content_type() in ("text/plain", "text/html")
        and part.get_filename() is None
        and part.get_content_disposition() in (None, "inline")
    )


def rows(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = []
    todo = [(msg, [])]
    while todo:
        part, section = todo.pop()
        ctype = part.get_content_type()
        if part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            if isinstance(payload, list):
                for i, sub in reversed(list(enumerate(payload, 1))):
                    todo.append((sub, section + [i]))
            continue
        if is_body(part):
            continue
        disposition = part.get_content_disposition()
        cid = part.get("Content-ID")
        cid = str(cid).strip().strip("<>").strip() if cid is not None else None
        row = {
            "part": ".".join(map(str, section)) or "1",
            "filename": part.get_filename(),
            "content_type": ctype,
            "disposition": disposition if disposition in ("attachment", "inline") else None,
            "content_id": cid or None,
            "size": None,
            "sha256": None,
        }
        if ctype != "message/rfc822":
            data = part.get_payload(decode=True)
            if data is None:
                data = b""
            row["size"] = len(data)
            row["sha256"] = hashlib.sha256(data).hexdigest()
        out.append(row)
    return out


def main():
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            result = {"file": path, "rows": rows(raw)}
        except Exception as e:  # the package gave up on this message
            result = {"file": path, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
