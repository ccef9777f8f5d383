"""Generated Chinese helpdesk tickets for the search benchmark: campus IT and a small company's
support desk (打印机, 邮箱, VPN, wifi, 蓝屏, 密码, 教务系统, 校园卡 …), building names and rooms,
English product names mixed in, short and long texts. Deterministic for a given seed.

Segmenting every text with jieba costs about 100 µs, several minutes for a million tickets, so
texts are composed from a bounded pool of fragments segmented once. Every fragment of a message
ends with a punctuation mark (。，！？ or a newline), where jieba always cuts, and the search
segmenter drops punctuation: the tokens of a message are its fragments' tokens concatenated,
exactly what segmenting the whole text would give (`check` verifies it on a sample).

    .venv/bin/python -m bench.corpus [--tickets 20] [--check 3000]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from app.services.search import Segmenter

# --- vocabulary ------------------------------------------------------------------------------

BUILDINGS = [
    "图书馆", "逸夫楼", "第一教学楼", "第二教学楼", "第三教学楼", "实验楼A座", "实验楼B座", "行政楼",
    "信息中心", "体育馆", "学生活动中心", "研究生公寓3号楼", "研究生公寓5号楼", "学生宿舍12栋",
    "学生宿舍7栋", "学生宿舍21栋", "教工宿舍", "外国语学院", "计算机学院", "经管学院", "医学院",
    "化学楼", "物理楼", "综合楼", "东区食堂", "西区食堂", "校医院", "财务处", "人事处", "后勤楼",
]  # fmt: skip
FLOORS = ["一楼", "二楼", "三楼", "四楼", "五楼", "六楼", "负一楼", "顶楼"]
PRINTERS = [
    "HP LaserJet M1005", "HP LaserJet Pro M404dn", "Canon iR2520", "Canon LBP2900", "Brother HL-2260D",
    "EPSON L3158", "联想 M7400", "理光 MP 2014", "奔图 P2500", "柯尼卡美能达 bizhub 367",
]  # fmt: skip
COMPUTERS = [
    "ThinkPad X1 Carbon", "ThinkPad E14", "MacBook Air", "MacBook Pro", "Dell OptiPlex 7090", "联想扬天",
    "华为 MateBook 14", "小米笔记本", "HP EliteBook 840", "戴尔灵越", "一体机", "台式机",
]  # fmt: skip
SOFTWARE = [
    "Office 2019", "Office 365", "WPS", "Outlook", "Foxmail", "Chrome", "Edge", "Zoom", "腾讯会议", "钉钉",
    "企业微信", "MATLAB", "SPSS", "AutoCAD", "Photoshop", "Adobe Acrobat", "CAJViewer", "EndNote",
    "Windows 10", "Windows 11", "macOS", "Visual Studio", "Python", "Teams",
]  # fmt: skip
SYSTEMS = [
    "教务系统", "选课系统", "一卡通系统", "OA系统", "财务系统", "邮件系统", "统一身份认证", "研究生管理系统",
    "图书馆座位预约系统", "人事系统", "科研管理系统", "报销系统", "网上缴费平台", "学工系统",
]  # fmt: skip
VPN_CLIENTS = ["EasyConnect", "Cisco AnyConnect", "OpenVPN", "深信服 VPN", "WebVPN", "Atrust"]
WIFI_NAMES = ["Campus-WiFi", "eduroam", "CMCC-EDU", "XX-Staff", "ChinaNet", "宿舍网", "Guest"]
ERRORS = [
    "0x0000007B", "0xc000021a", "IRQL_NOT_LESS_OR_EQUAL", "CRITICAL_PROCESS_DIED", "错误代码 809",
    "错误 691", "错误 651", "403 Forbidden", "502 Bad Gateway", "证书无效", "DNS_PROBE_FINISHED_NXDOMAIN",
    "0x80070005", "MEMORY_MANAGEMENT", "PAGE_FAULT_IN_NONPAGED_AREA",
]  # fmt: skip
WHEN = [
    "今天上午", "今天下午", "昨天晚上", "刚才", "这两天", "从上周开始", "周一早上", "最近一直", "开学以后",
    "中午的时候", "晚上十点多", "早上八点",
]  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞宇浩然晨曦思雨子涵一鸣欣怡俊杰梓萱"

# --- topics: title and text fragments with slots ---------------------------------------------
#
# Slots: {b} building, {f} floor, {r} room, {pr} printer, {pc} computer, {sw} software,
# {sys} system, {vpn} VPN client, {ssid} wifi name, {err} error, {when} time, {n} a number,
# {name} a person. A message fragment must end with punctuation (see the module docstring).


@dataclass(frozen=True)
class Topic:
    name: str
    weight: float
    titles: Sequence[str]
    details: Sequence[str]  # the requester's description and follow-ups
    replies: Sequence[str]  # an agent's answer
    notes: Sequence[str]  # internal notes


TOPICS = [
    Topic(
        "printer",
        12,
        [
            "{b}{f}打印机卡纸",
            "{b}{r}打印机无法打印",
            "打印机脱机了",
            "{pr}打印出来全是空白",
            "共享打印机连不上",
            "打印机提示缺纸但是有纸",
            "{b}的打印机需要加墨",
            "打印机驱动装不上",
            "{b}{f}复印机坏了",
            "打印机打印很慢",
            "扫描仪扫描不了",
            "{pr}报错",
            "打印机一直排队不出纸",
        ],
        [
            "{b}{f}的打印机{when}开始卡纸，",
            "型号是{pr}。",
            "打印的时候一直提示脱机，",
            "重启过打印机还是不行。",
            "我们办公室{r}的打印机连不上了，",
            "电脑上显示打印队列里有{n}个文档，",
            "打印出来有黑色条纹，",
            "硒鼓好像没墨了，",
            "换了一台电脑也打印不了。",
            "共享打印机提示找不到网络路径，",
            "急着打印材料，",
            "下午要交的报告打不出来！",
            "扫描的文件发不到邮箱里，",
            "驱动是从官网下载的，",
            "打印机面板上亮着红灯，",
        ],
        [
            "您好，请先把打印机关机再开机，",
            "请确认打印机和电脑在同一个网络，",
            "我们已经更换了硒鼓，",
            "驱动已经重新安装，请再试一下。",
            "请把打印机的IP地址发给我们，",
            "工程师{when}会去{b}{r}处理，",
            "卡纸已经取出来了，",
            "请在控制面板里删除打印队列后重试。",
        ],
        ["定影组件老化，需要报修厂家。", "该打印机已过保，建议采购新机。", "备件已申请，预计{n}天到货。"],
    ),
    Topic(
        "email",
        10,
        [
            "邮箱收不到邮件",
            "{sw}无法登录邮箱",
            "邮箱容量满了",
            "邮件发不出去",
            "邮箱被盗发垃圾邮件",
            "新员工开通邮箱",
            "邮箱密码忘记了",
            "手机上收不到学校邮箱的邮件",
            "邮件退信提示{err}",
            "邮箱附件太大发不了",
            "Outlook一直要求输入密码",
        ],
        [
            "我的邮箱{when}开始收不到外部邮件，",
            "用{sw}登录提示密码错误，",
            "网页版可以登录，",
            "但是客户端收不了信。",
            "邮箱提示容量已满，",
            "同事说给我发的邮件被退回了，",
            "退信里写着{err}，",
            "我没有点过奇怪的链接，",
            "邮箱里突然多了很多发出去的垃圾邮件！",
            "附件大概{n}MB，",
            "手机上配置的是IMAP，",
            "请帮忙开通一个部门公共邮箱，",
        ],
        [
            "您好，邮箱容量已经扩大到{n}GB，",
            "请在{sw}里把服务器改成imap.example.edu.cn，",
            "密码已经重置，",
            "请登录后尽快修改密码。",
            "大附件请使用文件中转站发送。",
            "您的邮箱已被临时冻结，",
            "请通过统一身份认证重新设置密码，",
        ],
        ["该账号有异常登录记录，来源IP在境外。", "已加入反垃圾白名单。", "邮件网关日志显示被拦截。"],
    ),
    Topic(
        "vpn",
        9,
        [
            "VPN连接不上",
            "校外访问不了知网",
            "{vpn}登录失败",
            "VPN连接后上不了网",
            "VPN提示{err}",
            "在家访问不了内网系统",
            "{vpn}一直掉线",
            "VPN账号申请",
            "出差期间需要用VPN",
        ],
        [
            "我在家里用{vpn}连接学校VPN，",
            "一直提示{err}，",
            "连上以后访问不了{sys}，",
            "校外查文献需要用VPN，",
            "{when}还能用，",
            "现在点连接没有反应，",
            "换成手机热点也一样，",
            "客户端版本是最新的，",
            "连上大概{n}分钟就断开了，",
            "出差在外地需要访问内网，",
        ],
        [
            "您好，请卸载旧版{vpn}后重新安装。",
            "VPN账号需要先在统一身份认证里开通，",
            "请尝试使用WebVPN访问，",
            "您的账号已经开通VPN权限。",
            "请检查电脑的时间是否正确，",
            "VPN服务器{when}在维护，",
        ],
        ["VPN网关许可证数量已满。", "该用户不在VPN授权名单里，已找部门审批。"],
    ),
    Topic(
        "wifi",
        12,
        [
            "宿舍wifi连不上",
            "{b}{f}没有无线信号",
            "{ssid}连上了但是上不了网",
            "wifi经常断线",
            "手机连不上{ssid}",
            "wifi网速很慢",
            "无线网认证页面打不开",
            "{b}wifi信号很差",
            "电脑搜不到wifi",
            "eduroam配置问题",
        ],
        [
            "{b}{r}的wifi{when}一直连不上，",
            "能搜到{ssid}，",
            "但是连接以后弹不出认证页面，",
            "手机可以连上，",
            "电脑就是连不上。",
            "信号满格但是打不开网页，",
            "网速只有{n}KB/s，",
            "晚上经常掉线，",
            "室友的电脑也一样，",
            "重启路由器也没有用，",
            "认证的时候提示账号已在别处登录，",
            "{b}{f}整层都没有无线信号！",
        ],
        [
            "您好，请在设置里忘记网络后重新连接，",
            "该区域的无线AP已经更换，",
            "请确认网卡驱动是最新的，",
            "认证账号是学号，初始密码是身份证后六位。",
            "我们{when}会派人去{b}检查AP，",
            "请把MAC地址发给我们，",
        ],
        ["{b}{f}的AP掉线，交换机端口故障。", "该楼层AP负载过高，需要扩容。"],
    ),
    Topic(
        "bluescreen",
        7,
        [
            "电脑蓝屏",
            "开机蓝屏{err}",
            "电脑经常蓝屏重启",
            "{pc}蓝屏死机",
            "更新以后蓝屏了",
            "电脑蓝屏了怎么办",
            "玩游戏的时候蓝屏",
            "蓝屏代码{err}",
        ],
        [
            "{when}电脑突然蓝屏了，",
            "蓝屏代码是{err}，",
            "重启以后过了{n}分钟又蓝屏，",
            "电脑是{pc}，",
            "系统是{sw}，",
            "最近装了一个新的软件，",
            "里面有很重要的论文文件！",
            "开机就蓝屏进不了系统，",
            "安全模式也进不去，",
            "拍了蓝屏的照片，",
        ],
        [
            "您好，请把电脑带到{b}{r}，",
            "初步判断是内存条接触不良，",
            "已经帮您重装了系统，",
            "数据已经备份，",
            "请卸载最近安装的驱动后再试。",
            "硬盘有坏道，建议尽快更换。",
        ],
        ["硬盘SMART报警，已备份数据。", "主板电容鼓包，需要送修。"],
    ),
    Topic(
        "password",
        11,
        [
            "密码忘记了",
            "{sys}密码重置",
            "账号被锁定",
            "统一身份认证登录不了",
            "修改密码后登录不了",
            "初始密码是什么",
            "{sys}提示密码错误",
            "手机号换了收不到验证码",
            "新生账号激活",
        ],
        [
            "我忘记了{sys}的密码，",
            "输错了{n}次密码，",
            "现在账号被锁定了，",
            "找回密码需要手机验证码，",
            "但是我的手机号已经换了，",
            "{when}改过一次密码，",
            "然后就一直提示密码错误。",
            "我是新入职的老师，",
            "工号是{n}，",
            "请问初始密码是什么？",
        ],
        [
            "您好，密码已经重置为初始密码，",
            "请登录后尽快修改密码。",
            "账号锁定{n}分钟后会自动解锁，",
            "请携带身份证到{b}{r}办理，",
            "手机号已经帮您更新，",
        ],
        ["已核对身份证信息，本人办理。", "该账号多次被撞库，建议开启二次验证。"],
    ),
    Topic(
        "academic",
        8,
        [
            "教务系统登录不了",
            "选课系统打不开",
            "教务系统成绩查询异常",
            "{sys}页面显示{err}",
            "选课时系统很卡",
            "教务系统课表显示错误",
            "教务系统无法提交成绩",
            "补考报名入口在哪里",
        ],
        [
            "{when}登录教务系统一直转圈，",
            "选课的时候提示{err}，",
            "成绩一栏显示空白，",
            "课表里少了{n}门课，",
            "录入成绩点提交没有反应，",
            "用{sw}和Edge都试过了，",
            "同学们都反映很卡，",
            "明天就截止了，",
            "麻烦尽快处理！",
        ],
        [
            "您好，教务系统{when}在升级，",
            "请清除浏览器缓存后再试，",
            "选课高峰期请错峰登录，",
            "成绩数据已经同步，",
            "已经转给教务处处理，",
        ],
        ["教务系统数据库连接池打满。", "已联系厂商工程师远程排查。"],
    ),
    Topic(
        "campus_card",
        7,
        [
            "校园卡丢失补办",
            "校园卡消费失败",
            "一卡通充值不到账",
            "校园卡刷不开门禁",
            "校园卡被冻结",
            "{b}的门禁刷卡没反应",
            "校园卡余额不对",
        ],
        [
            "我的校园卡{when}丢了，",
            "在{b}吃饭刷卡提示余额不足，",
            "但是我{when}刚充值了{n}元，",
            "充值记录显示成功，",
            "卡余额没有变化。",
            "刷门禁没有反应，",
            "卡片有点弯了，",
            "请问补办需要多少钱？",
        ],
        ["您好，请在一卡通系统里先挂失，", "补卡请到{b}{r}办理，", "充值款已经补上，", "门禁权限已经重新下发，"],
        ["圈存机网络中断，已恢复。", "该卡芯片损坏，需要换卡。"],
    ),
    Topic(
        "software",
        8,
        [
            "申请安装{sw}",
            "{sw}激活失败",
            "{sw}打不开",
            "正版软件下载",
            "{sw}提示许可证过期",
            "电脑需要装{sw}",
            "{sw}闪退",
        ],
        [
            "办公室的电脑需要安装{sw}，",
            "打开{sw}提示许可证过期，",
            "{when}更新以后就打不开了，",
            "双击没有任何反应，",
            "一打开就闪退，",
            "请问学校有没有正版授权？",
            "实验课要用{sw}，",
        ],
        ["您好，正版软件可以在正版化平台下载，", "激活需要连接校园网或者VPN，", "已经远程帮您安装好了，"],
        ["KMS服务器证书过期。", "该软件授权只覆盖教学机房。"],
    ),
    Topic(
        "computer",
        8,
        [
            "电脑开不了机",
            "{pc}运行很慢",
            "电脑中病毒了",
            "电脑屏幕不亮",
            "键盘鼠标没反应",
            "电脑风扇声音很大",
            "电脑自动重启",
            "电脑无法联网",
            "{b}{r}电脑故障",
        ],
        [
            "我的{pc}{when}开始很卡，",
            "开机要{n}分钟，",
            "电脑里弹出很多广告，",
            "文件被加密了，后缀都变了！",
            "按电源键没有反应，",
            "插网线显示未识别的网络，",
            "风扇一直响，",
            "屏幕闪了几下就黑了，",
        ],
        [
            "您好，请把电脑带到{b}{r}检测，",
            "已经查杀病毒，",
            "建议把机械硬盘换成固态硬盘，",
            "请检查网线是否插好，",
            "内存已经加到{n}GB，",
        ],
        ["疑似勒索病毒，已断网隔离。", "显卡故障，走固定资产报修。"],
    ),
    Topic(
        "meeting",
        6,
        [
            "{b}会议室投影仪没有信号",
            "投影仪连不上电脑",
            "会议室音响没声音",
            "{sw}共享屏幕失败",
            "教室多媒体设备故障",
            "{b}{r}电子白板不能用",
        ],
        [
            "{when}在{b}{r}开会，",
            "投影仪一直显示无信号，",
            "用HDMI线连接也不行，",
            "话筒没有声音，",
            "{sw}共享屏幕的时候对方看不到，",
            "{n}点就要上课了，",
        ],
        ["您好，我们的工程师马上到{b}{r}，", "请按一下中控面板上的电脑按钮，", "转接头已经放在讲台抽屉里，"],
        ["投影仪灯泡到寿命了。", "中控主机需要返厂。"],
    ),
    Topic(
        "phone",
        4,
        ["座机打不出去", "{b}{r}电话没有拨号音", "分机号码变更", "电话会议系统故障"],
        ["办公室{r}的座机{when}开始打不出去，", "拿起来没有拨号音，", "分机号是{n}，", "外线可以打进来，"],
        ["您好，电话线路已经检测，", "请确认话机的电源适配器是否插好，"],
        ["程控交换机板卡故障。"],
    ),
    Topic(
        "shredder",  # the rare word of the benchmark: about 1 ticket in 2,000
        0.05,
        ["碎纸机卡住了", "{b}碎纸机坏了"],
        ["{b}{f}的碎纸机{when}卡住了，", "碎纸机一直响但是不进纸，"],
        ["您好，碎纸机已经清理，"],
        ["碎纸机刀片需要更换。"],
    ),
]

GREETINGS = ["您好，", "老师好，", "你好，", "麻烦问一下，", "管理员您好，", "", "", ""]
CLOSINGS = ["谢谢！", "麻烦尽快处理，谢谢。", "谢谢老师！", "急！", "辛苦了。", "", "", "", ""]
FOLLOWUPS = [
    "还是不行，", "试过了，问题依旧。", "好的，谢谢！", "已经可以了，谢谢。", "请问什么时候能处理？",
    "我下午{n}点以后都在办公室，", "麻烦再看一下，", "截图已经发在附件里了。", "问题解决了，可以关单了。",
]  # fmt: skip
GENERIC_NOTES = [
    "已电话联系用户。", "转二线处理。", "用户不在，改约明天上门。", "同类问题本周第{n}次，需要排查根因。",
    "内部备注：该用户反复报修，联系辅导员。", "等待厂商回复。", "已更新知识库。",
]  # fmt: skip

STATUSES = [("closed", 55), ("resolved", 15), ("open", 12), ("pending", 8), ("new", 10)]
PRIORITIES = [("low", 20), ("normal", 60), ("high", 15), ("urgent", 5)]
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
CHANNELS = [("web", 45), ("miniprogram", 25), ("qq", 20), ("android", 8), ("api", 2)]
MESSAGE_COUNTS = [(1, 35), (2, 30), (3, 20), (4, 15)]
SPAN = timedelta(days=730)  # tickets spread over two years, ids in time order
END = datetime(2026, 11, 1, tzinfo=UTC)  # the default end; the search benchmark ends at today


T = TypeVar("T")


def _cumulative(pairs: Sequence[tuple[T, float]]) -> tuple[list[T], list[float]]:
    values = [value for value, _ in pairs]
    weights: list[float] = []
    total = 0.0
    for _, weight in pairs:
        total += weight
        weights.append(total)
    return values, weights


# --- the fragment pool -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fragment:
    text: str
    tokens: str  # segmented, space-joined ("" when the fragment has no word)


class Pool:
    """A bounded set of concrete fragments per (topic, kind), each segmented once."""

    def __init__(self, segmenter: Segmenter, rng: random.Random, *, per_template: int = 40) -> None:
        self.segmenter = segmenter
        self.rng = rng
        self.per_template = per_template
        self.fragments: dict[tuple[str, str], list[Fragment]] = {}
        for topic in TOPICS:
            for kind in ("titles", "details", "replies", "notes"):
                self.fragments[topic.name, kind] = self._instantiate(getattr(topic, kind))
        for name, templates in (
            ("greetings", GREETINGS),
            ("closings", CLOSINGS),
            ("followups", FOLLOWUPS),
            ("notes", GENERIC_NOTES),
        ):
            self.fragments["*", name] = self._instantiate(templates)

    def _instantiate(self, templates: Sequence[str]) -> list[Fragment]:
        out: list[Fragment] = []
        for template in templates:
            copies = 1 if "{" not in template else self.per_template
            texts = {self._fill(template) for _ in range(copies)}
            out += [Fragment(text, self.segmenter.segment(text)) for text in sorted(texts)]
        return out

    def _fill(self, template: str) -> str:
        rng = self.rng
        slots = {
            "b": rng.choice(BUILDINGS),
            "f": rng.choice(FLOORS),
            "r": f"{rng.randint(1, 6)}{rng.randint(0, 2)}{rng.randint(1, 9)}室",
            "pr": rng.choice(PRINTERS),
            "pc": rng.choice(COMPUTERS),
            "sw": rng.choice(SOFTWARE),
            "sys": rng.choice(SYSTEMS),
            "vpn": rng.choice(VPN_CLIENTS),
            "ssid": rng.choice(WIFI_NAMES),
            "err": rng.choice(ERRORS),
            "when": rng.choice(WHEN),
            "n": str(rng.choice([2, 3, 5, 10, 20, 30, 50, 100, 200, 8602, 13579])),
            "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
        }
        return template.format(**slots)

    def size(self) -> int:
        return sum(len(fragments) for fragments in self.fragments.values())

    def pick(self, topic: str, kind: str) -> Fragment:
        return self.rng.choice(self.fragments[topic, kind])


# --- tickets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenMessage:
    author_id: int
    body: str
    tokens: str
    internal: bool
    channel: str
    created_at: datetime


@dataclass(frozen=True)
class GenTicket:
    id: int
    number: str
    title: str
    title_tokens: str
    status: str
    priority: str
    channel: str
    requester_id: int
    assignee_id: int | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    messages: list[GenMessage]

    @property
    def priority_rank(self) -> int:
        return PRIORITY_RANK[self.priority]


def _join(fragments: Sequence[Fragment]) -> tuple[str, str]:
    return "".join(f.text for f in fragments), " ".join(f.tokens for f in fragments if f.tokens)


class Corpus:
    """Users and tickets, generated from `seed`: the same seed gives the same corpus."""

    def __init__(self, tickets: int, *, seed: int = 7, segmenter: Segmenter | None = None, end: datetime = END) -> None:
        self.tickets = tickets
        self.seed = seed
        self.end = end  # the newest ticket's time: texts depend on the seed only, times on this too
        self.segmenter = segmenter or Segmenter.shared()
        self.segmenter.load()
        self.pool = Pool(self.segmenter, random.Random(seed))  # noqa: S311  # not cryptography
        self.customers = max(100, min(100_000, tickets // 8))
        self.agents = 40
        # User ids: agents 1..agents, customers after them.
        self.first_customer = self.agents + 1

    def users(self) -> Iterator[tuple[int, str, str, str]]:
        """(id, username, display_name, role) of every generated user."""
        rng = random.Random(self.seed + 1)  # noqa: S311
        for user_id in range(1, self.agents + self.customers + 1):
            role = "agent" if user_id <= self.agents else "customer"
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
            yield user_id, f"{role[0]}{user_id:06d}", name, role

    def generate(self, *, first: int = 1, count: int | None = None) -> Iterator[GenTicket]:
        """Tickets `first` .. `first + count - 1`, each from its own random stream (so any range
        is the same whatever was generated before). Messages are in order; the loader numbers
        them."""
        last = self.tickets if count is None else min(self.tickets, first + count - 1)
        topics, topic_weights = _cumulative([(t, t.weight) for t in TOPICS])
        statuses, status_weights = _cumulative(STATUSES)
        priorities, priority_weights = _cumulative(PRIORITIES)
        channels, channel_weights = _cumulative(CHANNELS)
        counts, count_weights = _cumulative(MESSAGE_COUNTS)
        step = SPAN / max(1, self.tickets)
        start = self.end - SPAN
        for ticket_id in range(first, last + 1):
            rng = random.Random(self.seed * 1_000_003 + ticket_id)  # noqa: S311
            topic = rng.choices(topics, cum_weights=topic_weights)[0]
            status = rng.choices(statuses, cum_weights=status_weights)[0]
            priority = rng.choices(priorities, cum_weights=priority_weights)[0]
            channel = rng.choices(channels, cum_weights=channel_weights)[0]
            n_messages = rng.choices(counts, cum_weights=count_weights)[0]
            created = start + step * ticket_id + timedelta(seconds=rng.randint(0, 59))
            requester = self.first_customer + rng.randrange(self.customers)
            assignee = None if status == "new" else 1 + rng.randrange(self.agents)
            title = self._pick(rng, topic.name, "titles")
            messages: list[GenMessage] = []
            moment = created
            for index in range(n_messages):
                moment = moment + timedelta(minutes=rng.randint(1, 600))
                if index == 0:
                    parts = [self._pick(rng, "*", "greetings")]
                    parts += self._picks(rng, topic.name, "details", rng.choice((1, 2, 2, 3, 4, 6)))
                    parts.append(self._pick(rng, "*", "closings"))
                    author, internal = requester, False
                elif assignee is not None and rng.random() < 0.25:
                    kind = rng.choice(("notes", "generic"))
                    parts = [self._pick(rng, topic.name, "notes") if kind == "notes" else self._pick(rng, "*", "notes")]
                    author, internal = assignee, True
                elif assignee is not None and rng.random() < 0.6:
                    parts = self._picks(rng, topic.name, "replies", rng.randint(1, 3))
                    parts.append(self._pick(rng, "*", "closings"))
                    author, internal = assignee, False
                else:
                    parts = [self._pick(rng, "*", "followups")]
                    if rng.random() < 0.5:
                        parts.append(self._pick(rng, topic.name, "details"))
                    author, internal = requester, False
                body, tokens = _join([p for p in parts if p.text])
                if not body:
                    body, tokens = _join([self._pick(rng, topic.name, "details")])
                messages.append(
                    GenMessage(
                        author_id=author,
                        body=body,
                        tokens=tokens,
                        internal=internal,
                        channel=channel,
                        created_at=moment,
                    )
                )
            updated = min(self.end, moment)
            yield GenTicket(
                id=ticket_id,
                number=f"{created:%Y%m%d}-{ticket_id:07d}",  # unique by id; the day keeps it readable
                title=title.text,
                title_tokens=title.tokens,
                status=status,
                priority=priority,
                channel=channel,
                requester_id=requester,
                assignee_id=assignee,
                created_at=created,
                updated_at=updated,
                resolved_at=updated if status in ("resolved", "closed") else None,
                closed_at=updated if status == "closed" else None,
                messages=messages,
            )

    def _pick(self, rng: random.Random, topic: str, kind: str) -> Fragment:
        return rng.choice(self.pool.fragments[topic, kind])

    def _picks(self, rng: random.Random, topic: str, kind: str, count: int) -> list[Fragment]:
        fragments = self.pool.fragments[topic, kind]
        return rng.sample(fragments, min(count, len(fragments)))


def check(corpus: Corpus, sample: int) -> int:
    """Segment `sample` composed texts whole and compare with the composed tokens; the number
    of mismatches (0 expected)."""
    mismatches = 0
    seen = 0
    for ticket in corpus.generate(count=sample):
        texts = [(ticket.title, ticket.title_tokens)] + [(m.body, m.tokens) for m in ticket.messages]
        for text, tokens in texts:
            seen += 1
            if corpus.segmenter.segment(text) != tokens:
                mismatches += 1
                if mismatches <= 5:
                    print(f"mismatch: {text!r}\n  composed: {tokens}\n  whole:    {corpus.segmenter.segment(text)}")
    print(f"checked {seen} texts of {sample} tickets: {mismatches} mismatches")
    return mismatches


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=10, help="print this many generated tickets")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--check", type=int, default=0, help="verify composed tokens on this many tickets")
    args = parser.parse_args(argv)
    corpus = Corpus(max(args.tickets, args.check), seed=args.seed)
    out(f"# fragment pool: {corpus.pool.size()} fragments")
    for ticket in corpus.generate(count=args.tickets):
        out(f"\n[{ticket.number}] {ticket.title}  ({ticket.status}, {ticket.priority}, {ticket.channel})")
        for message in ticket.messages:
            out(f"  {'(内部) ' if message.internal else ''}{message.body}")
    if args.check:
        raise SystemExit(1 if check(corpus, args.check) else 0)


if __name__ == "__main__":
    main()
