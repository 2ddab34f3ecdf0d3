"""What a simulated BMC knows about its server: FRU inventory, sensors and the event log, as
ipmi_sim emulation commands (``IpmiSim(..., emu_extra=lab_emu())``).

The bytes are built here from the specifications (IPMI FRU Information Storage Definition 1.0;
IPMI 2.0 section 43 for sensor data records and FRU locators, section 32 for SEL records;
JEDEC DDR4 SPD for the DIMMs), so rinv, rvitals and reventlog meet data shaped like a real
server's, and ipmitool, reading the same BMC, judges what they print.

>>> area = encode_fru(FruData(product_serial="S1234"))
>>> area[0], sum(area[:8]) % 256
(1, 0)
>>> Sensor(2, "12V", SENSOR_VOLTAGE, UNIT_VOLTS, raw=200, m=6, r_exp=-2).value
12.0
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

BMC = 0x20  # the BMC's IPMB address; ipmi_sim's mc_setbmc in ipmisim.EMU

# sensor types (IPMI 2.0 table 42-3) and base units (table 43-15)
SENSOR_TEMPERATURE, SENSOR_VOLTAGE, SENSOR_CURRENT, SENSOR_FAN = 0x01, 0x02, 0x03, 0x04
SENSOR_POWER_UNIT = 0x09
UNIT_DEGREES_C, UNIT_VOLTS, UNIT_WATTS, UNIT_RPM = 1, 4, 6, 18
# entity ids (table 43-13)
ENTITY_PROCESSOR, ENTITY_SYSTEM_BOARD, ENTITY_POWER_SUPPLY, ENTITY_FAN = 3, 7, 10, 29

FRU_EPOCH = _dt.datetime(1996, 1, 1, tzinfo=_dt.UTC)


# ---- FRU ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FruData:
    """The fields of FRU device 0 (chassis, board and product info areas)."""

    chassis_type: int = 0x17  # rack mount chassis
    chassis_part: str = "CH-2U-01"
    chassis_serial: str = "CHS0001"
    board_date: _dt.datetime = _dt.datetime(2024, 5, 1, 12, 0, tzinfo=_dt.UTC)
    board_manufacturer: str = "Pyxcat Labs"
    board_product: str = "PX-Board 9"
    board_serial: str = "BRD42000017"
    board_part: str = "PX-MB-0009"
    product_manufacturer: str = "Pyxcat Labs"
    product_name: str = "PX-2000 Server"
    product_part: str = "PX2000-8C"
    product_version: str = "A01"
    product_serial: str = "S1234567"
    asset_tag: str = "ASSET-0042"


def _field(text: str) -> bytes:
    """One type/length field, 8-bit ASCII. A one-byte string would read as the end marker
    (0xC1), so the specification forbids it; refuse rather than write a FRU that lies."""
    data = text.encode("ascii")
    if len(data) == 1 or len(data) > 63:
        raise ValueError(f"FRU field {text!r}: length must be 0 or 2..63 bytes")
    return bytes([0xC0 | len(data)]) + data


def _checksum(data: bytes) -> int:
    """The byte that makes the sum of ``data`` and itself zero (mod 256)."""
    return -sum(data) & 0xFF


def _area(body: bytes) -> bytes:
    """An info area: version 1, length in 8-byte units, body, end marker, padding, checksum."""
    raw = bytearray([0x01, 0]) + body + b"\xc1"
    while (len(raw) + 1) % 8:
        raw.append(0)
    raw[1] = (len(raw) + 1) // 8
    return bytes(raw + bytes([_checksum(raw)]))


def encode_fru(fru: FruData) -> bytes:
    """FRU device 0 as the BMC stores it: common header, chassis, board and product areas."""
    minutes = int((fru.board_date - FRU_EPOCH).total_seconds() // 60)
    chassis = _area(bytes([fru.chassis_type]) + _field(fru.chassis_part)
                    + _field(fru.chassis_serial))
    board = _area(bytes([0]) + minutes.to_bytes(3, "little") + _field(fru.board_manufacturer)
                  + _field(fru.board_product) + _field(fru.board_serial)
                  + _field(fru.board_part) + _field(""))
    product = _area(bytes([0]) + _field(fru.product_manufacturer) + _field(fru.product_name)
                    + _field(fru.product_part) + _field(fru.product_version)
                    + _field(fru.product_serial) + _field(fru.asset_tag) + _field(""))
    offset = 1  # in 8-byte units, after the header
    header = bytearray([0x01, 0, offset, offset + len(chassis) // 8,
                        offset + (len(chassis) + len(board)) // 8, 0, 0])
    header.append(_checksum(header))
    return bytes(header + chassis + board + product)


# ---- sensors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sensor:
    """A threshold sensor: its full sensor record (SDR type 01h) and its current raw reading.

    The reading converts as (m * raw + b * 10**b_exp) * 10**r_exp, unsigned, linear.
    Thresholds are raw values (upper non-critical, critical, non-recoverable)."""

    number: int
    name: str
    sensor_type: int
    unit: int
    raw: int
    m: int = 1
    b: int = 0
    r_exp: int = 0
    b_exp: int = 0
    entity: int = ENTITY_SYSTEM_BOARD
    upper: tuple[int, int, int] = (0, 0, 0)
    lower: tuple[int, int, int] = (0, 0, 0)

    def convert(self, raw: int) -> float:
        return float((self.m * raw + self.b * 10 ** self.b_exp) * 10 ** self.r_exp)

    @property
    def value(self) -> float:
        """The reading in its units, as a BMC client should decode it."""
        return round(self.convert(self.raw), 6)

    def thresholds(self) -> tuple[int, ...]:
        """Upper non-recoverable, critical, non-critical, then lower non-recoverable, critical,
        non-critical: the order of the SDR and of ipmi_sim's sensor_set_threshold."""
        return (*self.upper[::-1], *self.lower[::-1])

    def threshold_mask(self) -> str:
        """ipmi_sim's enable string: a '1' for each threshold set, leftmost first."""
        return "".join("1" if v else "0" for v in self.thresholds())

    def emu(self, record_id: int) -> list[str]:
        """Its SDR, and a live sensor with the same thresholds and its reading."""
        key = f"0x{BMC:02x} 0 0x{self.number:02x}"
        values = " ".join(f"0x{v:02x}" for v in self.thresholds())
        return [f"main_sdr_add 0x{BMC:02x} {_hex(self.sdr(record_id))}",
                f"sensor_add {key} 0x{self.sensor_type:02x} 0x01",
                f"sensor_set_threshold {key} readable {self.threshold_mask()} {values}",
                f"sensor_set_value {key} 0x{self.raw:02x} 0"]

    def sdr(self, record_id: int) -> bytes:
        """The full sensor record (IPMI 2.0 table 43-1)."""
        name = self.name.encode("ascii")
        if not 2 <= len(name) <= 16:
            raise ValueError(f"sensor name {self.name!r}: 2..16 characters")
        m, b = self.m & 0x3FF, self.b & 0x3FF
        unc, uc, unr = self.upper
        lnc, lc, lnr = self.lower
        readable = (0x08 if unc else 0) | (0x10 if uc else 0) | (0x20 if unr else 0) \
            | (0x01 if lnc else 0) | (0x02 if lc else 0) | (0x04 if lnr else 0)
        body = bytes([
            BMC, 0, self.number,                  # owner, LUN, sensor number
            self.entity, 1,                       # entity id, instance
            0x7F,                                 # init: scanning, events, thresholds, ...
            0x68,                                 # auto re-arm, hysteresis and thresholds readable
            self.sensor_type, 0x01,               # threshold-based reading
            0, 0, 0, 0,                           # assertion / deassertion event masks
            readable, readable,                   # readable and settable threshold masks
            0x00, self.unit, 0,                   # unsigned, base unit, no modifier
            0,                                    # linear
            m & 0xFF, (m >> 2) & 0xC0,            # M, tolerance 0
            b & 0xFF, (b >> 2) & 0xC0,            # B, accuracy 0
            0,                                    # accuracy, direction
            ((self.r_exp & 0xF) << 4) | (self.b_exp & 0xF),
            0,                                    # analog characteristics
            self.raw, 0, 0, 0xFF, 0,              # nominal, normal max/min, sensor max/min
            unr, uc, unc, lnr, lc, lnc,           # thresholds
            0, 0, 0, 0, 0,                        # hysteresis, reserved, OEM
            0xC0 | len(name)]) + name
        return record_id.to_bytes(2, "little") + bytes([0x51, 0x01, len(body)]) + body


# ---- DIMMs: a FRU locator record and the module's SPD (DDR4, JEDEC 21-C 4.1.2.L-5) -------
ENTITY_MEMORY_DEVICE = 0x20


@dataclass(frozen=True)
class Dimm:
    """One memory module: FRU device ``fru_id`` holding its SPD, found through a FRU device
    locator (SDR type 11h, device type 10h, modifier 01h: DIMM memory ID)."""

    fru_id: int
    name: str
    part: str = "M393A1K43BB1-CTD"
    serial: int = 0x3A1F0C27
    manufacturer: tuple[int, int] = (0x80, 0xCE)  # JEDEC bank 1, Samsung
    year: int = 0x23   # BCD, 2023
    week: int = 0x14   # BCD

    def spd(self) -> bytes:
        """512 bytes of DDR4 SPD: an 8 GB single-rank x8 ECC RDIMM at 2666 MT/s."""
        spd = bytearray(512)
        spd[0:19] = bytes([0x23, 0x11, 0x0C, 0x01, 0x85, 0x21, 0x00, 0, 0, 0, 0, 0x03,
                           0x01, 0x0B, 0, 0, 0, 0x00, 0x06])
        spd[126:128] = _crc16(spd[:126]).to_bytes(2, "little")
        spd[320:325] = bytes([*self.manufacturer, 0x01, self.year, self.week])
        spd[325:329] = self.serial.to_bytes(4, "big")
        spd[329:349] = self.part.encode("ascii").ljust(20)[:20]
        spd[382:384] = _crc16(spd[256:382]).to_bytes(2, "little")
        return bytes(spd)

    def emu(self, record_id: int) -> list[str]:
        """Its FRU device locator and its SPD as FRU data."""
        return [f"main_sdr_add 0x{BMC:02x} {_hex(self.locator(record_id))}",
                f"mc_add_fru_data 0x{BMC:02x} 0x{self.fru_id:02x} 0x200 data {_hex(self.spd())}"]

    def locator(self, record_id: int) -> bytes:
        """The FRU device locator record (IPMI 2.0 table 43-7)."""
        name = self.name.encode("ascii")
        body = bytes([BMC, self.fru_id, 0x80, 0, 0, 0x10, 0x01, ENTITY_MEMORY_DEVICE, 1, 0,
                      0xC0 | len(name)]) + name
        return record_id.to_bytes(2, "little") + bytes([0x51, 0x11, len(body)]) + body


def _crc16(data: bytes) -> int:
    """The SPD checksum: CRC-16, polynomial 1021h, initial value 0."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


# ---- SEL ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelEvent:
    """One system event record (type 02h): a sensor's event at a time (seconds since 1970;
    ipmi_sim stamps the entries it loads with its own clock instead)."""

    timestamp: int
    sensor_type: int
    sensor_number: int
    event_type: int          # 01h threshold, 6Fh sensor-specific, ...
    data: tuple[int, int, int]
    deassertion: bool = False

    def record(self) -> bytes:
        """The 13 bytes after the record type: time, generator (the BMC), EvM rev 04h, ..."""
        direction = self.event_type | (0x80 if self.deassertion else 0)
        return self.timestamp.to_bytes(4, "little") + bytes(
            [BMC, 0, 0x04, self.sensor_type, self.sensor_number, direction, *self.data])


# ---- what the lab BMC holds ---------------------------------------------------------------
DEFAULT_FRU = FruData()

DEFAULT_SENSORS = (
    Sensor(1, "CPU Temp", SENSOR_TEMPERATURE, UNIT_DEGREES_C, raw=40,
           entity=ENTITY_PROCESSOR, upper=(80, 90, 100)),
    Sensor(2, "12V", SENSOR_VOLTAGE, UNIT_VOLTS, raw=200, m=6, r_exp=-2,
           upper=(220, 230, 240), lower=(180, 170, 160)),
    Sensor(3, "3.3V", SENSOR_VOLTAGE, UNIT_VOLTS, raw=165, m=2, r_exp=-2,
           upper=(180, 190, 200), lower=(150, 140, 130)),
    Sensor(4, "Fan 1", SENSOR_FAN, UNIT_RPM, raw=100, m=60,
           entity=ENTITY_FAN, lower=(20, 15, 10)),
    Sensor(5, "System Power", SENSOR_CURRENT, UNIT_WATTS, raw=60, m=2,
           entity=ENTITY_POWER_SUPPLY, upper=(200, 225, 250)),
)

_T0 = int(_dt.datetime(2026, 3, 1, 8, 0, tzinfo=_dt.UTC).timestamp())
DEFAULT_EVENTS = (
    # CPU Temp above its upper non-critical threshold (offset 7), reading 85 / threshold 80
    SelEvent(_T0, SENSOR_TEMPERATURE, 1, 0x01, (0x57, 85, 80)),
    # Fan 1 below its lower critical threshold (offset 2), reading 14 / threshold 15
    SelEvent(_T0 + 60, SENSOR_FAN, 4, 0x01, (0x52, 14, 15)),
    # the temperature event recovers
    SelEvent(_T0 + 120, SENSOR_TEMPERATURE, 1, 0x01, (0x57, 78, 80), deassertion=True),
    # a power unit (no SDR of its own) reports power off (offset 0)
    SelEvent(_T0 + 180, SENSOR_POWER_UNIT, 0x30, 0x6F, (0x00, 0xFF, 0xFF)),
)


DEFAULT_DIMMS = (Dimm(1, "DIMM A1"), Dimm(2, "DIMM B1", serial=0x3A1F0C28))


def _hex(data: bytes) -> str:
    return " ".join(f"0x{b:02x}" for b in data)


@dataclass(frozen=True)
class BmcData:
    """Everything one simulated BMC holds, and the ipmi_sim commands that load it."""

    fru: FruData = DEFAULT_FRU
    sensors: tuple[Sensor, ...] = DEFAULT_SENSORS
    events: tuple[SelEvent, ...] = DEFAULT_EVENTS
    dimms: tuple[Dimm, ...] = DEFAULT_DIMMS
    fru_size: int = 256
    extra: tuple[str, ...] = ()

    def emu(self) -> str:
        """ipmi_sim emulation commands: FRU 0, the sensors, the DIMMs and the SEL entries
        (after ipmisim.EMU has added and enabled the BMC)."""
        image = encode_fru(self.fru)
        if len(image) > self.fru_size:
            raise ValueError("FRU data larger than the FRU device")
        lines = [f"mc_add_fru_data 0x{BMC:02x} 0x00 0x{self.fru_size:x} data {_hex(image)}"]
        for record_id, s in enumerate(self.sensors, start=1):
            lines += s.emu(record_id)
        for record_id, d in enumerate(self.dimms, start=len(self.sensors) + 1):
            lines += d.emu(record_id)
        for e in self.events:
            lines.append(f"sel_add 0x{BMC:02x} 0x02 {_hex(e.record())}")
        return "\n".join([*lines, *self.extra]) + "\n"


def lab_emu(data: BmcData | None = None) -> str:
    """The emulation text for ``IpmiSim(emu_extra=...)``: the lab's default server unless
    ``data`` says otherwise."""
    return (data or BmcData()).emu()
