#!/usr/bin/python3
"""Normalise `pg_dump --schema-only --binary-upgrade` output for comparing a
fresh install with an upgraded one (test/scripts/upgrade_check.sh).

The dump is cut into its "-- Name:" blocks, which are sorted, so creation
order does not matter.  What only records how the objects were made is
removed: OID-setting calls, frozen-xid updates, pg_dump's own headers, and
dropped columns (an upgrade that drops a column leaves a placeholder that a
fresh table never had; the remaining columns are what a client sees).
Everything else, every definition, default, privilege, policy and comment,
is kept and compared.  One block per output line, newlines as \\n."""
import re
import sys

DROP_LINE = re.compile(
    r"binary_upgrade_set_next|binary_upgrade_set_record_init_privs"
    r"|^SELECT pg_catalog\.set_config|relfrozenxid = |^WHERE oid = '\d+';"
    r"|^-- Dumped |^-- TOC entry|^-- Dependencies:|^\\(un)?restrict |^-- PostgreSQL database dump")
EXT_OIDS = re.compile(
    r"(binary_upgrade_create_empty_extension\('[a-z_]+', '[a-z_]+', [a-z]+, '[^']*', )'\{[0-9,]*\}'")


def block(text):
    paragraphs = []
    for para in text.split("\n\n"):
        if "pg.dropped" in para and not para.lstrip().startswith("CREATE"):
            continue                       # the dropped column's recreate/drop statements
        lines = [l for l in para.split("\n") if "pg.dropped" not in l and not DROP_LINE.search(l)]
        # a dropped last column leaves the column before it with a comma
        for i in range(1, len(lines)):
            if lines[i].startswith(")") and lines[i - 1].endswith(","):
                lines[i - 1] = lines[i - 1][:-1]
        para = EXT_OIDS.sub(r"\1'{oids}'", "\n".join(lines)).strip("\n")
        if para.strip() and not re.fullmatch(r"(\s*--[^\n]*\n?)*", para):
            paragraphs.append(para)
    return "\n\n".join(paragraphs)


def main():
    dump = sys.stdin.read()
    blocks = dump.split("\n--\n-- Name: ")[1:]
    out = sorted(block(b).replace("\n", "\\n") for b in blocks)
    sys.stdout.write("".join(b + "\n" for b in out))


if __name__ == "__main__":
    main()
