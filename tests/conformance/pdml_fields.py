#!/usr/bin/env python3
"""Flatten tshark PDML into lines the Rust conformance test reads.

Reads PDML on stdin; for every packet prints a line "packet", then one
line per dissected field of the protocols named on the command line:
"<name>\t<show>\t<value>" (value is the raw bytes in hex, as tshark
gives them). Fields keep tshark's order, so repeated extensions appear
in wire order.
"""
import sys
import xml.etree.ElementTree as ET

protos = set(sys.argv[1:])


def walk(el):
    for f in el.iter("field"):
        name = f.get("name", "")
        if not name:
            continue
        print("%s\t%s\t%s" % (name, f.get("show", ""), f.get("value", "")))


root = ET.parse(sys.stdin).getroot()
for pkt in root.iter("packet"):
    print("packet")
    for proto in pkt.iter("proto"):
        if proto.get("name") in protos:
            walk(proto)
