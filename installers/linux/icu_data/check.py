"""Check Qt with the reduced ICU data library against Qt with the real one (run by build.sh).

Usage: python check.py REFERENCE_ROOT REDUCED_ROOT

Each root holds a copy of PySide6 (`ROOT/PySide6`); they differ only in
`PySide6/Qt/lib/libicudata.so.73`. For each system locale below, this script starts itself once
per root (`--probe`, under QT_QPA_PLATFORM=offscreen), where Qt formats numbers and dates, sorts
with QCollator, decodes text through QStringDecoder's names (QXmlStreamReader), changes case,
names time zones and draws text into a QImage and a widget. Every result must be the same with
both libraries, except the few that depend on data left out on purpose (other languages'
collation and zone names, table converters for non-Latin scripts): those are printed, not
compared. Exits 0 when everything that must match does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

# System locales to probe. English and C must give identical results; German shows what a
# non-English desktop loses (its collation and zone names fall back to the root data).
SYSTEM_LOCALES = ("en_US.UTF-8", "C.UTF-8", "de_DE.UTF-8")
ENGLISH_SYSTEM_LOCALES = ("en_US.UTF-8", "C.UTF-8")
# Results that come from ICU data the reduced library leaves out by design.
DROPPED_CONVERTERS = ("Shift_JIS", "KOI8-R", "GB18030", "EUC-KR")
INFORMATIONAL_PREFIXES = ("codecs.available", *(f"decode.{name}" for name in DROPPED_CONVERTERS))
NON_ENGLISH_SYSTEM_PREFIXES = ("system.collate", "system.zone")

SAMPLE_WORDS = [
    "peach", "péché", "Péché", "pêche", "apple", "Apple", "Zebra", "zebra", "äpfel", "Ångström",
    "résumé", "resume", "file10", "file9", "file-2", "file_1", "naïve", "co-op", "coop", "ß",
    "ss", "Øre", "œuvre", "İstanbul", "ﬁsh", "1.5", "10", "9", "", " space",
]
ZONES = [b"Europe/Berlin", b"America/New_York", b"Asia/Tokyo", b"Australia/Sydney", b"UTC", b"Asia/Kolkata"]
CASE_SAMPLES = ["straße", "ǆemal", "ﬁnal", "ΣΑΣ ΟΔΟΣ", "İSTANBUL", "istanbul", "Ǆ", "ŉ", "ΐ"]


def probe() -> dict[str, object]:
    """Everything Qt does through ICU in this process, as text (run in a child process)."""
    from PySide6.QtCore import (
        QBuffer,
        QByteArray,
        QCollator,
        QDate,
        QDateTime,
        QIODevice,
        QLocale,
        QStringConverter,
        Qt,
        QTime,
        QTimeZone,
        QXmlStreamReader,
    )
    from PySide6.QtGui import QColor, QFont, QImage, QPainter
    from PySide6.QtWidgets import QApplication, QLabel

    results: dict[str, object] = {}
    maps = Path("/proc/self/maps").read_text().splitlines()
    icu_data = sorted({line.split()[-1] for line in maps if "libicudata" in line})
    results["loaded.icudata"] = icu_data  # compared by the parent against the root, not equality

    app = QApplication(["icu-check"])
    english = QLocale("en_US")
    system = QLocale.system()
    results["system.name"] = system.name()
    when = QDateTime(QDate(2026, 11, 24), QTime(9, 30, 15), QTimeZone(b"Europe/Berlin"))

    for label, locale in (("en", english), ("system", system)):
        results[f"{label}.number"] = [
            locale.toString(1234567.891, "f", 2), locale.toString(-0.000123, "e", 3),
            locale.toString(42), locale.toCurrencyString(1234.5), locale.formattedDataSize(123456789),
        ]
        results[f"{label}.date"] = [
            locale.toString(when.date(), QLocale.FormatType.LongFormat),
            locale.toString(when.date(), QLocale.FormatType.ShortFormat),
            locale.toString(when, "dddd d MMMM yyyy HH:mm:ss"),
            locale.toString(when.time(), QLocale.FormatType.ShortFormat),
            locale.dayName(2), locale.monthName(11), locale.dateTimeFormat(),
        ]
        # the long time format and "t" carry a zone name (ICU's, in the locale's language)
        results[f"{label}.zone.in_dates"] = [
            locale.toString(when, "dddd d MMMM yyyy HH:mm:ss t"),
            locale.toString(when.time(), QLocale.FormatType.LongFormat),
        ]
        results[f"{label}.case"] = [[locale.toUpper(text), locale.toLower(text)] for text in CASE_SAMPLES]
        for mode, configure in (
            ("default", lambda c: None),
            ("case_insensitive", lambda c: c.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)),
            ("numeric", lambda c: c.setNumericMode(True)),
            ("ignore_punctuation", lambda c: c.setIgnorePunctuation(True)),
        ):
            collator = QCollator(locale)
            configure(collator)
            results[f"{label}.collate.{mode}"] = sorted(SAMPLE_WORDS, key=lambda word: _SortKey(collator, word))
        for zone_id in ZONES:
            zone = QTimeZone(zone_id)
            names = []
            for time_type in QTimeZone.TimeType:
                for name_type in QTimeZone.NameType:
                    names.append(zone.displayName(time_type, name_type, locale))
            results[f"{label}.zone.{zone_id.decode()}"] = names
    results["tr.case"] = [[QLocale("tr_TR").toUpper(text), QLocale("tr_TR").toLower(text)] for text in CASE_SAMPLES]

    zone_ids = [bytes(zone_id).decode() for zone_id in QTimeZone.availableTimeZoneIds()]
    results["zones.ids"] = [len(zone_ids), hashlib.sha256("\n".join(zone_ids).encode()).hexdigest()]
    results["zones.offsets"] = [QTimeZone(zone_id).offsetFromUtc(when) for zone_id in ZONES]
    results["zones.system"] = bytes(QTimeZone.systemTimeZoneId()).decode()
    results["zones.canonical"] = [bytes(QTimeZone(b"US/Eastern").id()).decode(), QTimeZone(b"US/Eastern").isValid()]

    # Text through QStringConverter's named codecs: the built-in ones (UTF-8, UTF-16, Latin-1)
    # and ICU's (everything else), as QXmlStreamReader decodes a document's declared encoding.
    samples = {
        "UTF-8": "héllo wörld €".encode(),
        "UTF-16LE": "héllo wörld €".encode("utf-16-le"),
        "ISO-8859-1": "café naïve".encode("latin-1"),
        "US-ASCII": b"plain text",
        "windows-1252": "café € \u201cquoted\u201d".encode("cp1252"),
        "ISO-8859-15": "café € œ".encode("iso8859_15"),
        "Shift_JIS": "あいう".encode("shift_jis"),
        "KOI8-R": "привет".encode("koi8_r"),
        "GB18030": "中文".encode("gb18030"),
        "EUC-KR": "한국어".encode("euc_kr"),
    }
    for name, payload in samples.items():
        declaration = f'<?xml version="1.0" encoding="{name}"?>'.encode()
        if name.startswith("UTF-16"):
            declaration = declaration.decode().encode("utf-16-le")
            payload = declaration + "<t>".encode("utf-16-le") + payload + "</t>".encode("utf-16-le")
        else:
            payload = declaration + b"<t>" + payload + b"</t>"
        buffer = QBuffer()
        buffer.setData(QByteArray(payload))
        buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        reader = QXmlStreamReader(buffer)
        text = []
        while not reader.atEnd():
            reader.readNext()
            if reader.isCharacters():
                text.append(reader.text())
        results[f"decode.{name}"] = ["".join(text), reader.errorString() if reader.hasError() else ""]
    results["codecs.available"] = len(QStringConverter.availableCodecs())

    # Text drawn into an image and a widget: fonts and shaping are Qt's (HarfBuzz, fontconfig),
    # the strings come from the locale calls above.
    image = QImage(480, 64, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setFont(QFont("DejaVu Sans", 12))
    painter.drawText(8, 24, "Hello, wörld: " + english.toString(1234567.891, "f", 2))
    painter.drawText(8, 52, english.toString(when, "dddd d MMMM yyyy") + " " + english.toUpper("straße"))
    painter.end()
    results["draw.image"] = hashlib.sha256(bytes(image.constBits())).hexdigest()
    label = QLabel(system.toString(when.date(), QLocale.FormatType.LongFormat))
    label.resize(320, 40)
    grabbed = label.grab().toImage()
    results["draw.widget"] = hashlib.sha256(bytes(grabbed.constBits())).hexdigest()
    app.quit()
    return results


class _SortKey:
    """Orders words as the QCollator does (QCollator.compare, not Python's string order)."""

    def __init__(self, collator, word: str) -> None:
        self.collator, self.word = collator, word

    def __lt__(self, other: _SortKey) -> bool:
        return self.collator.compare(self.word, other.word) < 0


def run_probe(root: Path, system_locale: str) -> dict[str, object]:
    environment = dict(os.environ, QT_QPA_PLATFORM="offscreen", LANG=system_locale, LC_ALL=system_locale,
                       LANGUAGE="", TZ="Europe/London")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    completed = subprocess.run([sys.executable, __file__, "--probe"], env=environment, capture_output=True,
                               text=True, timeout=120, check=False)
    if completed.returncode != 0:
        sys.exit(f"check: the probe with {root.name} ({system_locale}) failed:\n{completed.stderr[-2000:]}")
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    loaded = results.pop("loaded.icudata")
    if len(loaded) != 1 or not Path(loaded[0]).resolve().is_relative_to(root.resolve()):
        sys.exit(f"check: the probe with {root} loaded {loaded}, not that root's libicudata")
    return results


def compare(reference_root: Path, reduced_root: Path) -> int:
    failures = 0
    for system_locale in SYSTEM_LOCALES:
        reference = run_probe(reference_root, system_locale)
        reduced = run_probe(reduced_root, system_locale)
        informational = INFORMATIONAL_PREFIXES
        if system_locale not in ENGLISH_SYSTEM_LOCALES:
            informational += NON_ENGLISH_SYSTEM_PREFIXES
        same = different_by_design = 0
        for key in sorted(reference.keys() | reduced.keys()):
            before, after = reference.get(key), reduced.get(key)
            if before == after:
                same += 1
            elif key.startswith(informational):
                different_by_design += 1
                print(f"check: {system_locale}: {key} differs (data left out on purpose): "
                      f"{_short(before)} -> {_short(after)}")
            else:
                failures += 1
                print(f"check: {system_locale}: {key} DIFFERS: {_short(before)} -> {_short(after)}")
        print(f"check: system locale {system_locale}: {same} results identical, "
              f"{different_by_design} differ by design, {failures} failures so far")
    return failures


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "..."


def main(argv: list[str]) -> int:
    if argv == ["--probe"]:
        print(json.dumps(probe(), ensure_ascii=False))
        return 0
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    reference_root, reduced_root = (Path(arg) for arg in argv)
    for root in (reference_root, reduced_root):
        if not any((root / "PySide6" / "Qt" / "lib").glob("libicudata.so.*")):
            print(f"check: no PySide6 with ICU data under {root}", file=sys.stderr)
            return 2
    failures = compare(reference_root, reduced_root)
    if failures:
        print(f"check: {failures} results differ: keep the real ICU data", file=sys.stderr)
        return 1
    print("check: Qt gives the same results with the reduced ICU data")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
