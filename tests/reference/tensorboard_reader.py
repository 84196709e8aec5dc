"""Independent reader for TensorBoard event files, as a second opinion on tandem's writer.

Shares no code with the C++ side: CRC-32C computed bit by bit in Python, TFRecord framing parsed
with struct, and the Event/Summary messages decoded by python3-protobuf from a descriptor built
here by hand from TensorFlow's field numbers (event.proto, summary.proto), not from tandem's .proto.

    /usr/bin/python3 tensorboard_reader.py EVENTS_FILE   prints the events as a JSON list

Also imported by checkpoint tests for crc32c().
"""
import json
import struct
import sys


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _TABLE[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def masked_crc32c(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """Every record's payload; raises ValueError on a bad CRC or a truncated record."""
    with open(path, "rb") as f:
        buf = f.read()
    pos, out = 0, []
    while pos < len(buf):
        if pos + 12 > len(buf):
            raise ValueError("truncated record header at byte %d" % pos)
        header = buf[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", buf[pos + 8:pos + 12])
        if len_crc != masked_crc32c(header):
            raise ValueError("length CRC mismatch at byte %d" % pos)
        data = buf[pos + 12:pos + 12 + length]
        if len(data) != length or pos + 16 + length > len(buf):
            raise ValueError("truncated record at byte %d" % pos)
        (data_crc,) = struct.unpack("<I", buf[pos + 12 + length:pos + 16 + length])
        if data_crc != masked_crc32c(data):
            raise ValueError("data CRC mismatch at byte %d" % pos)
        out.append(data)
        pos += 16 + length
    return out


def event_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="tb_reader_event.proto", package="tbreader",
                                            syntax="proto3")

    def field(msg, name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
        f = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof

    value = fd.message_type.add(name="Value")
    value.oneof_decl.add(name="value")
    field(value, "tag", 1, F.TYPE_STRING)
    field(value, "simple_value", 2, F.TYPE_FLOAT, oneof=0)
    summary = fd.message_type.add(name="Summary")
    field(summary, "value", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".tbreader.Value")
    event = fd.message_type.add(name="Event")
    event.oneof_decl.add(name="what")
    field(event, "wall_time", 1, F.TYPE_DOUBLE)
    field(event, "step", 2, F.TYPE_INT64)
    field(event, "file_version", 3, F.TYPE_STRING, oneof=0)
    field(event, "summary", 5, F.TYPE_MESSAGE, type_name=".tbreader.Summary", oneof=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    desc = pool.FindMessageTypeByName("tbreader.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def read_events(path):
    Event = event_class()
    events = []
    for data in read_records(path):
        e = Event()
        e.ParseFromString(data)
        item = {"wall_time": e.wall_time, "step": e.step, "values": []}
        if e.WhichOneof("what") == "file_version":
            item["file_version"] = e.file_version
        for v in e.summary.value:
            item["values"].append([v.tag, v.simple_value if v.HasField("simple_value") else None])
        events.append(item)
    return events


if __name__ == "__main__":
    json.dump(read_events(sys.argv[1]), sys.stdout)
