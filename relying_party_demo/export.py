"""The data download: one student's grades and attendance as XML (xml.etree escapes every value)."""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

from relying_party_demo.students import StudentRecord

EXPORT_VERSION = "1"
# ElementTree escapes markup characters but writes any character; XML 1.0 forbids some (2.2).
NOT_XML_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return NOT_XML_CHARACTERS.sub("\ufffd", value)


def student_xml(record: StudentRecord) -> bytes:
    """Return the record as an XML document, UTF-8 with a declaration."""
    student = record.student
    root = ET.Element("student", {"id": _text(student.id), "version": EXPORT_VERSION})
    name = ET.SubElement(root, "name")
    ET.SubElement(name, "given").text = _text(student.given_name)
    ET.SubElement(name, "family").text = _text(student.family_name)
    ET.SubElement(root, "school", {"code": record.school.code}).text = record.school.name
    grades = ET.SubElement(root, "grades", {"term": record.term})
    for grade in record.grades:
        course = ET.SubElement(grades, "course", {"name": grade.course, "teacher": grade.teacher})
        ET.SubElement(course, "percent").text = str(grade.percent)
        ET.SubElement(course, "letter").text = grade.letter
    attendance = record.attendance
    days = ET.SubElement(root, "attendance", {"term": record.term})
    for tag, value in (
        ("daysEnrolled", attendance.days_enrolled),
        ("daysPresent", attendance.days_present),
        ("excusedAbsences", attendance.excused_absences),
        ("unexcusedAbsences", attendance.unexcused_absences),
        ("tardies", attendance.tardies),
    ):
        ET.SubElement(days, tag).text = str(value)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def export_filename(record: StudentRecord) -> str:
    """A file name safe in a Content-Disposition header, whatever the student id holds."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", record.student.id).strip("_") or "student"
    return f"student-{safe}-grades-attendance.xml"
