"""The two messages of stream.proto in protobuf's wire format, written out: both hold only
varint fields, and the test servers then need no generated code (grpcio-tools)."""


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(**fields):
    """`encode(n=3, delay_ms=100)` → CountRequest; `encode(value=7)` → Number."""
    numbers = {"n": 1, "delay_ms": 2, "value": 1}
    out = b""
    for name, value in fields.items():
        if value:
            out += bytes([numbers[name] << 3]) + varint(value)
    return out


def decode(data):
    """Field number → value, for messages of varint fields."""
    fields, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        if key & 7 != 0:
            raise ValueError("only varint fields are expected")
        fields[key >> 3], i = read_varint(data, i)
    return fields


def read_varint(data, i):
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
