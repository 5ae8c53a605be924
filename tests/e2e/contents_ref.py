#!/usr/bin/env python3
"""The Python pipeline's way, as an independent reference for quire's contents reader (and
the side of the benchmark it is measured against): unpack the archive to disk with
tarfile, then read the pages and the METS back the way the pipeline does.

    contents_ref.py ocr ARCHIVE OUT.jsonl      pages as the pipeline writes them (plain)
    contents_ref.py ocrgz ARCHIVE OUT.jsonl.gz the same, gzip level 1
    contents_ref.py marc ARCHIVE OUT.json      the MARC fields (ElementTree), {} for none
    contents_ref.py check ARCHIVE              prints "VERDICT MEMBER" for checksum.md5
    contents_ref.py all ARCHIVE OUTDIR         ocrgz + marc, as the pipeline does per book
    contents_ref.py alldir DIR BARCODE OUTDIR  the same from an archive already unpacked
                                               in DIR (by tar xzf, say)
TMPDIR decides where archives are unpacked.
"""
import glob
import gzip
import hashlib
import json
import os
import re
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

NS = {"mets": "http://www.loc.gov/METS/", "slim": "http://www.loc.gov/MARC21/slim"}


def unpack(archive, into):
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(into)


def pages(root):
    found = []
    for path in glob.glob(os.path.join(root, "**", "*.txt"), recursive=True):
        m = re.match(r"^(\d{8})\.txt$", os.path.basename(path))
        if m and 1 <= int(m.group(1)) <= 999999:
            found.append((int(m.group(1)), path))
    found.sort(key=lambda x: x[0])
    expected = 1
    for num, path in found:
        while expected < num:
            yield ""
            expected += 1
        with open(path, encoding="utf-8", errors="replace") as f:
            yield f.read()
        expected = num + 1


def write_ocr(root, out, gz):
    opener = (lambda p: gzip.open(p, "wt", encoding="utf-8", compresslevel=1)) if gz else \
        (lambda p: open(p, "w", encoding="utf-8"))
    n = 0
    with opener(out) as f:
        for text in pages(root):
            f.write(json.dumps(text, ensure_ascii=False) + "\n")
            n += 1
    return n


def first(rec, path):
    e = rec.find(path, NS)
    return e.text.strip() if e is not None and e.text else None


def many(rec, path, strip_periods=False):
    vals = []
    for e in rec.findall(path, NS):
        if e.text:
            t = e.text.strip()
            vals.append(t.rstrip(".") if strip_periods else t)
    return ", ".join(vals) if vals else None


def marc_fields(root):
    xmls = glob.glob(os.path.join(root, "**", "*.xml"), recursive=True)
    content = None
    for x in sorted(xmls):
        try:
            with open(x, encoding="utf-8") as f:
                content = f.read()
            break
        except Exception:
            continue
    if content is None:
        return {}
    try:
        doc = ET.fromstring(content)
    except ET.ParseError:
        return {}
    rec = doc.find(".//mets:dmdSec/mets:mdWrap/mets:xmlData/slim:record", NS)
    if rec is None:
        return {}
    r = {"control_number": first(rec, ".//slim:controlfield[@tag='001']")}
    f008 = first(rec, ".//slim:controlfield[@tag='008']")
    d = {"date1": None, "date2": None, "date_type": None, "language": None}
    if f008 and len(f008) >= 40:
        for key, a, b in (("date1", 7, 11), ("date2", 11, 15)):
            s = f008[a:b]
            d[key] = s if s.isdigit() and "999" not in s else None
        d["date_type"] = f008[6] if f008[6] != " " else None
        d["language"] = f008[35:38] if f008[35:38] != "   " else None
    r.update(d)
    df = ".//slim:datafield[@tag='%s']/slim:subfield[@code='%s']"
    for key, tag, code in (("loc_control_number", "010", "a"), ("title", "245", "a"),
                           ("title_remainder", "245", "b"), ("author100", "100", "a"),
                           ("author110", "110", "a"), ("author111", "111", "a")):
        r[key] = first(rec, df % (tag, code))
    r["loc_call_number"] = many(rec, df % ("050", "a"))
    r["isbn"] = many(rec, df % ("020", "a"))
    r["subject"] = many(rec, df % ("650", "a"), True)
    r["genre"] = many(rec, df % ("655", "a"), True)
    r["note"] = many(rec, df % ("500", "a"))
    o = many(rec, df % ("035", "a"))
    if o:
        kept = [x.strip() for x in o.split(", ") if x.strip() and "(OCoLC)" in x]
        r["oclc"] = ", ".join(kept) if kept else None
    else:
        r["oclc"] = None
    return r


def check(archive):
    sums, listed, names, counts = {}, None, [], {"img": 0, "txt": 0, "html": 0}
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            if not m.isfile():
                continue
            name = m.name[2:] if m.name.startswith("./") else m.name
            data = tar.extractfile(m).read()
            base = os.path.basename(name)
            if base == "checksum.md5" and listed is None:
                listed = []
                for line in data.decode("utf-8", "replace").splitlines():
                    if line:
                        listed.append((line[34:], line[:32].lower()))
                continue
            mm = re.match(r"^\d{8}\.(jp2|tif|txt|html)$", base)
            if mm:
                counts[{"jp2": "img", "tif": "img"}.get(mm.group(1), mm.group(1))] += 1
            if name not in sums:
                names.append(name)
            sums[name] = hashlib.md5(data).hexdigest()
    if listed is None:
        return "no-list", ""
    lmap = {}
    for n, h in listed:
        lmap.setdefault(n, h)
    for n in names:
        if n in lmap and lmap[n] != sums[n]:
            return "mismatch", n
    for n in names:
        if n not in lmap:
            return "unlisted", n
    for n, _ in listed:
        if n not in sums:
            return "missing", n
    if not counts["img"] == counts["txt"] == counts["html"]:
        return "page-counts", ""
    return "ok", ""


def main():
    cmd, archive = sys.argv[1], sys.argv[2]
    if cmd == "alldir":
        bc, out = sys.argv[3], sys.argv[4]
        write_ocr(archive, os.path.join(out, bc + "_ocr.jsonl.gz"), True)
        with open(os.path.join(out, bc + "_marc.json"), "w", encoding="utf-8") as f:
            json.dump(marc_fields(archive), f, ensure_ascii=False)
        return
    if cmd == "check":
        print(*check(archive))
        return
    with tempfile.TemporaryDirectory(prefix="contents-ref-") as tmp:
        unpack(archive, tmp)
        if cmd in ("ocr", "ocrgz"):
            write_ocr(tmp, sys.argv[3], cmd == "ocrgz")
        elif cmd == "marc":
            with open(sys.argv[3], "w", encoding="utf-8") as f:
                json.dump(marc_fields(tmp), f, ensure_ascii=False)
        elif cmd == "all":
            bc = os.path.basename(archive).split(".")[0]
            write_ocr(tmp, os.path.join(sys.argv[3], bc + "_ocr.jsonl.gz"), True)
            with open(os.path.join(sys.argv[3], bc + "_marc.json"), "w", encoding="utf-8") as f:
                json.dump(marc_fields(tmp), f, ensure_ascii=False)


if __name__ == "__main__":
    main()
