"""Complete, realistic sample contexts, one per notification kind.

They follow the context contract documented in ``notifications/render.py`` and are
drawn from the seed plan (Kế hoạch công tác dân vận năm 2022, tỉnh Hải Dương).
The plan's số/ký hiệu and date of issue are not in the seed text, so they are None
here (rendered "…/KH-UBND" and left out). E-mail addresses use the reserved
``.example`` domain.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

ICT = timezone(timedelta(hours=7), "ICT")  # Asia/Ho_Chi_Minh has no DST


def _at(year: int, month: int, day: int, hour: int = 8, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ICT)


DUE = _at(2022, 12, 9, 17, 0)  # "trước ngày 10/12/2022": Saturday 10/12 -> end of Friday 9/12

PLAN = {
    "kind": "KẾ HOẠCH",
    "title": (
        "Triển khai thực hiện công tác dân vận của cơ quan hành chính nhà nước, "
        "chính quyền các cấp năm 2022 trên địa bàn tỉnh Hải Dương"
    ),
    "number": None,
    "issued_on": None,
    "issuer": "UBND TỈNH HẢI DƯƠNG",
    "place": "Hải Dương",
    "signer": {"line1": "KT. CHỦ TỊCH", "line2": "PHÓ CHỦ TỊCH", "name": "Nguyễn Minh Hùng"},
    "basis": (
        "Chỉ thị số 33/CT-TTg ngày 26/11/2021 của Thủ tướng Chính phủ “Về tiếp tục tăng cường "
        "và đổi mới công tác dân vận của cơ quan nhà nước và chính quyền các cấp trong tình hình mới”"
    ),
    "tasks": [
        "Tổ chức quán triệt và thể chế hóa chủ trương, đường lối của Đảng, chính sách, pháp luật "
        "của Nhà nước về công tác dân vận.",
        "Tiếp tục đẩy mạnh công tác tuyên truyền, giáo dục nâng cao nhận thức về công tác dân vận; "
        "gắn với việc học tập và làm theo tư tưởng, đạo đức, phong cách Hồ Chí Minh.",
        "Đẩy mạnh thực hiện Chương trình cải cách hành chính, chương trình chuyển đổi số và thực hiện "
        "Quy chế dân chủ ở cơ sở.",
        "Thực hiện có hiệu quả công tác tiếp xúc, đối thoại, xử lý đơn thư khiếu nại, tố cáo.",
        "Nâng cao đạo đức công vụ, tinh thần trách nhiệm, ý thức phục vụ nhân dân của cán bộ, "
        "công chức, viên chức.",
        "Phối hợp chặt chẽ với Mặt trận Tổ quốc Việt Nam và các tổ chức chính trị - xã hội.",
    ],
    "recipients": [
        "Thường trực Tỉnh ủy",
        "Chủ tịch, các PCT UBND tỉnh",
        "Ban Dân vận Tỉnh ủy",
        "Ủy ban MTTQ, các đoàn thể CT-XH tỉnh",
        "Các sở, ban, ngành của tỉnh",
        "UBND các huyện, thành phố, thị xã",
        "Lưu: VT, KGVX",
    ],
    # the words that depend on the plan (planflow.report.plan_words): a city's read "UBND thành
    # phố", "Thành ủy"
    "words": {
        "province_kind": "tinh", "level": "tỉnh", "ubnd": "UBND tỉnh", "party": "Tỉnh ủy",
        "province": "Hải Dương", "party_body": "Tỉnh ủy Hải Dương", "issuer": "UBND tỉnh Hải Dương",
        "coordinator": "Sở Nội vụ", "reviewers": ["Ban Dân vận Tỉnh ủy"],
        "report_to": ["Tỉnh ủy Hải Dương", "Bộ Nội vụ"],
        "subject": (
            "Triển khai thực hiện công tác dân vận của cơ quan hành chính nhà nước, "
            "chính quyền các cấp năm 2022 trên địa bàn tỉnh Hải Dương"
        ),
    },
}

SENDER = {"code": "so-noi-vu", "name": "Sở Nội vụ", "head": "Giám đốc Sở Nội vụ",
          "email": "so-noi-vu@haiduong.example"}
UBND_TINH = {"code": "ubnd-tinh-hai-duong", "name": "UBND tỉnh Hải Dương", "head": "Chủ tịch UBND tỉnh Hải Dương",
             "email": "ubnd-tinh-hai-duong@haiduong.example"}
# where a unit of the province's tier reports; a commune reports to its district ({"name": ..., "via": None})
SUBMIT_TO = {"code": "ubnd-tinh-hai-duong", "name": "UBND tỉnh Hải Dương", "via": "Sở Nội vụ"}

SO_TU_PHAP = {
    "code": "so-tu-phap",
    "name": "Sở Tư pháp",
    "head": "Giám đốc Sở Tư pháp",
    "email": "so-tu-phap@haiduong.example",
}
UBND_THANH_MIEN = {
    "code": "ubnd-huyen-thanh-mien",
    "name": "UBND huyện Thanh Miện",
    "head": "Chủ tịch UBND huyện Thanh Miện",
    "email": "ubnd-huyen-thanh-mien@haiduong.example",
}
SO_NOI_VU = {
    "code": "so-noi-vu",
    "name": "Sở Nội vụ",
    "head": "Giám đốc Sở Nội vụ",
    "email": "so-noi-vu@haiduong.example",
}
BAN_DAN_VAN = {
    "code": "ban-dan-van-tinh-uy",
    "name": "Ban Dân vận Tỉnh ủy",
    "head": None,
    "email": "ban-dan-van-tinh-uy@haiduong.example",
}
PCT_UBND = {
    "code": "pct-ubnd-tinh",
    "name": "Phó Chủ tịch UBND tỉnh",
    "head": "Đồng chí Nguyễn Minh Hùng - Phó Chủ tịch UBND tỉnh",
    "email": "pct-ubnd-tinh@haiduong.example",
}

TASK = {"name": "Báo cáo kết quả tự đánh giá công tác dân vận năm 2022"}

LATE_UNITS = [
    {"name": "Sở Tư pháp", "code": "so-tu-phap", "due": DUE, "working_days_overdue": 3},
    {"name": "UBND huyện Thanh Miện", "code": "ubnd-huyen-thanh-mien", "due": DUE, "working_days_overdue": 3},
    {"name": "UBND thị xã Kinh Môn", "code": "ubnd-thi-xa-kinh-mon", "due": DUE, "working_days_overdue": 3},
]

COUNTS = {"expected": 30, "on_time": 26, "late": 3, "missing": 1}

REPORT_NAME = (
    "Kết quả đánh giá, xếp loại việc thực hiện Kế hoạch số …/KH-UBND của UBND tỉnh Hải Dương về triển khai "
    "thực hiện công tác dân vận của cơ quan hành chính nhà nước, chính quyền các cấp năm 2022 trên địa bàn "
    "tỉnh Hải Dương"
)
REPORT_BODIES = {"report_name": REPORT_NAME, "report_to": ["Tỉnh ủy Hải Dương", "Bộ Nội vụ"],
                 "reviewers": ["Ban Dân vận Tỉnh ủy"]}


def _base(recipient: dict, sent_at: datetime) -> dict:
    return {"plan": PLAN, "recipient": recipient, "sent_at": sent_at, "sender": SENDER}


SAMPLE_CONTEXTS: dict[str, dict] = {
    "dissemination": {
        **_base(SO_TU_PHAP, _at(2022, 3, 22, 9, 0)),
        "sender": UBND_TINH,
        "issued_here": True,
        "due": DUE,
        "duties": ["Sở, ban, ngành tự đánh giá và báo cáo UBND tỉnh (qua Sở Nội vụ)"],
        "report": {"due": DUE, "submit_to": SUBMIT_TO},
    },
    "reminder": {
        **_base(UBND_THANH_MIEN, _at(2022, 12, 7)),
        "task": TASK,
        "due": DUE,
        "submit_to": SUBMIT_TO,
        "working_days_left": 2,
        "unit": UBND_THANH_MIEN,
    },
    "overdue": {
        **_base(SO_TU_PHAP, _at(2022, 12, 12)),
        "task": TASK,
        "due": DUE,
        "submit_to": SUBMIT_TO,
        "unit": SO_TU_PHAP,
        "working_days_overdue": 1,
        "level": 1,
    },
    "escalation-1": {
        **_base(UBND_THANH_MIEN, _at(2022, 12, 13)),
        "task": TASK,
        "due": DUE,
        "submit_to": SUBMIT_TO,
        "internal": False,
        "level": 1,
        "units": [dict(LATE_UNITS[1], working_days_overdue=2)],
    },
    "escalation-2": {
        **_base(BAN_DAN_VAN, _at(2022, 12, 14, 9, 0)),
        "task": TASK,
        "due": DUE,
        "submit_to": SUBMIT_TO,
        "internal": False,
        "level": 2,
        "units": [dict(u, working_days_overdue=3) for u in LATE_UNITS[1:]],
    },
    "escalation-final": {
        **_base(PCT_UBND, _at(2022, 12, 19)),
        "task": TASK,
        "due": DUE,
        "submit_to": SUBMIT_TO,
        "internal": False,
        "level": 3,
        "units": [dict(LATE_UNITS[2], working_days_overdue=6)],
    },
    "review-request": {
        **_base(BAN_DAN_VAN, _at(2022, 12, 21, 10, 0)),
        "round": 1,
        "counts": COUNTS,
        "classes": {"Tốt": 17, "Khá": 10, "Trung bình": 2, "Yếu": 0, "Không đủ điều kiện xếp loại": 1},
        **REPORT_BODIES,
    },
    "report-upward": {
        **_base({"code": "bo-noi-vu", "name": "Bộ Nội vụ", "head": None, "email": "bo-noi-vu@haiduong.example"},
                _at(2022, 12, 19, 15, 0)),
        "round": 1,
        "counts": COUNTS,
        "classes": {"Tốt": 17, "Khá": 10, "Trung bình": 2, "Yếu": 0, "Không đủ điều kiện xếp loại": 1},
        **REPORT_BODIES,
    },
    "incident": {
        **_base(SO_NOI_VU, _at(2022, 12, 16, 8, 5)),
        "incident": {"step": "aggregation", "flow_run": "lucky-heron", "state": "Crashed",
                     "message": "Flow run process exited with code 137"},
    },
    "review-result": {
        **_base(SO_NOI_VU, _at(2022, 12, 26, 15, 30)),
        "sender": {"code": "ban-dan-van-tinh-uy", "name": "Ban Dân vận Tỉnh ủy", "head": "Trưởng Ban Dân vận Tỉnh ủy",
                   "email": "ban-dan-van-tinh-uy@haiduong.example"},
        **REPORT_BODIES,
        "decision": "return",
        "comment": (
            "Bổ sung phân tích nguyên nhân đối với đơn vị không đủ điều kiện xếp loại; "
            "rà soát lại điểm tiêu chí 3 (cải cách hành chính) của UBND huyện Thanh Miện."
        ),
        "round": 1,
    },
    "link": {
        **_base(SO_TU_PHAP, _at(2022, 11, 28, 9, 30)),
        "unit": SO_TU_PHAP,
        "task": {"name": "Sở, ban, ngành tự đánh giá, báo cáo UBND tỉnh (qua Sở Nội vụ)"},
        "due": DUE,
        "generation": 1,
        "link_purpose": None,  # the reviewer's link: "xem báo cáo và gửi ý kiến thẩm định"
        "link": "https://baocao.haiduong.example/u/WyJoYWktZHVvbmctZGFuLXZhbi0yMDIyLzIwMjIiLCJzby10dS1waGFwIl0.mau",
    },
    "receipt": {
        **_base(SO_TU_PHAP, _at(2022, 12, 1, 14, 5)),
        "unit": SO_TU_PHAP,
        "task": {"name": "Sở, ban, ngành tự đánh giá, báo cáo UBND tỉnh (qua Sở Nội vụ)"},
        "due": DUE,
        "received_at": _at(2022, 12, 1, 14, 5),
        "late": False,
        "total": 92.5,
        "receipt": {"number": "2022-3F2A-9C41",
                    "file": {"name": "bao-cao-tu-danh-gia.pdf",
                             "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
    },
    "publication": {
        **_base(SO_TU_PHAP, _at(2022, 12, 30, 14, 0)),
        "results": [
            {"name": "Sở Nội vụ", "score": 95.5, "classification": "Tốt"},
            {"name": "Sở Tư pháp", "score": 91.0, "classification": "Tốt"},
            {"name": "UBND huyện Thanh Miện", "score": 78.25, "classification": "Khá"},
            {"name": "UBND thị xã Kinh Môn", "score": None, "classification": "Không đủ điều kiện xếp loại"},
        ],
        **REPORT_BODIES,
        "counts": COUNTS,
    },
}
