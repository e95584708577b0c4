"""Text preparation: normalisation, the script a model reads, and PII masking.

Every text that reaches features, storage, logs or a screen goes through :func:`clean` first, so a
complainant's phone number or ID number never leaves this module unmasked.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal

# Excel writes carriage returns inside cells as the literal text "_x000D_".
_EXCEL_CR = re.compile(r"_x000[dD]_")
# Format characters (zero-width joiners, bidi overrides, BOM) and lone surrogates carry no meaning and
# confuse the tokenizer; control characters other than whitespace are noise from copy and paste.
_DROP_CATEGORIES = frozenset({"Cf", "Cs", "Co", "Cn"})
# Web markup that a message board or a form's rich-text field leaves in an export (路灯不亮<br>,
# &nbsp;): an HTML tag, its name in letters and digits after < or </ (so 温度<30度 and <幸福里小区>
# are text), and a character reference ended by its semicolon (so 网址?id=1&section=2 keeps its
# &sect, which html.unescape alone would read as §). Normalisation runs after lower-casing.
_TAG = re.compile(r"</?[a-z][a-z0-9]*(?:[\s/][^<>]*)?>")
_CHARREF = re.compile(r"&(?:#[0-9]+|#x[0-9a-f]+|[a-z][a-z0-9]*);")
# CJK unified ideographs.
_IDEOGRAPH = re.compile("[\u4e00-\u9fff]")
# Unicode's control characters (category Cc) are exactly these two ranges; they become spaces.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# NFKC maps the full-width ASCII forms (U+FF01–FF5E) to ASCII, and the ideographic and no-break
# spaces to a space: one character to one character. Chinese text is full of them (，：！（）), and a
# text holding any is normalised by unicodedata at about 75 ns a character, the largest cost of
# preparing a long ticket. Replacing each of them first by its compatibility decomposition leaves
# the text's full compatibility decomposition, and so its NFKC form, unchanged; what remains is then
# usually NFKC already, which unicodedata checks quickly.
_WIDTH_FOLD = {chr(c): unicodedata.normalize("NFKD", chr(c)) for c in range(0xFF01, 0xFF5F)} | {
    "\u3000": " ",
    "\xa0": " ",
}
_WIDE = re.compile("[\uff01-\uff5e\u3000\xa0]")
# Above this length an array pass beats a regular-expression callback per full-width character.
_FOLD_WITH_ARRAYS = 256

MASK_ID = "[身份证号]"
MASK_MOBILE = "[手机号]"
MASK_LANDLINE = "[电话]"
MASK_EMAIL = "[邮箱]"
MASK_CARD = "[银行卡号]"
# Lower case: a cleaned text is cleaned again unchanged (normalize lower-cases Latin letters).
MASK_QQ = "[qq号]"
MASK_WECHAT = "[微信号]"
MASK_PLATE = "[车牌号]"
MASK_PASSPORT = "[护照号]"
# Every placeholder masking writes.
PLACEHOLDERS = (
    MASK_ID,
    MASK_MOBILE,
    MASK_LANDLINE,
    MASK_EMAIL,
    MASK_CARD,
    MASK_QQ,
    MASK_WECHAT,
    MASK_PLATE,
    MASK_PASSPORT,
)

# What citizens write between a number's groups: a space, a hyphen, a dot, an en or an em dash; the
# other dashes that word processors and phone keyboards put there (U+2010 hyphen, U+2011
# non-breaking hyphen, U+2012 figure dash, U+2015 horizontal bar, U+2212 minus sign), which NFKC
# keeps; and the ideographic full stop that a Chinese keyboard types for a dot (138。1234。5678).
# NFKC has already made the full-width forms (－ ．) half-width. A dot or a dash may also have a
# space on either side (138 - 1234 - 5678, 0731 - 8888 0000). The patterns below write this as {S}.
_SEPARATORS = " .-\u2013\u2014\u2010\u2011\u2012\u2015\u2212\u3002"
_SEP = "(?: ?[" + re.escape(_SEPARATORS.replace(" ", "")) + "] ?| )"


def _pattern(source: str) -> re.Pattern[str]:
    """``source`` compiled, with ``{S}`` standing for the class of group separators."""
    return re.compile(source.replace("{S}", _SEP))


# 18-digit ID numbers with a plausible birth date, also written in groups of 6-8-4, 6-4-4-4 or
# 4-4-4-4-2 digits with a space, a hyphen, a dot or a dash between them, as mobile numbers are
# (430102 19900101 1234, 430102-1990-0101-123X, 4301 0219 9001 0112 34, 430102.19900101.1234,
# 430102–1990–0101–1234), the birth date checked alike; and the 15-digit numbers of the first
# generation (430102900101123: no century and no check digit, so its month and day are both
# checked), also in groups of 6-6-3 digits with the same separators (430102 900101 123,
# 430102-900101-123). A letter may follow, as a digit may not: contact details typed without
# punctuation (430102199001011234qq12345, …1234wx:…) left the number whole when a letter after it
# was refused, as it never was after a mobile number; an x typed after the 18th character
# (430102199001011234x) is taken with it. One pattern for all these forms scans a long ticket as
# fast as one for the unbroken form; the tests check it against a pattern for each.
_ID_NUMBER = _pattern(
    r"[1-9](?<!\d\d)\d{3}"
    r"(?:(?:\d{2}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}"
    r"|\d{2}{S}(?:18|19|20)\d{2}{S}?(?:0[1-9]|1[0-2])\d{2}{S}\d{3}"
    r"|{S}\d{2}(?:18|19|20){S}\d{2}(?:0[1-9]|1[0-2]){S}\d{4}{S}\d)[\dXx][Xx]?"
    r"|\d{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}"
    r"|\d{2}{S}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]){S}\d{3})"
    r"(?!\d)"
)


def _luhn(digits: str) -> bool:
    """Whether a number passes the Luhn check, as every UnionPay, Visa and Mastercard number does."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# The separators removed from a number to check its digits (see _SEPARATORS).
_NO_SEPARATORS = str.maketrans("", "", _SEPARATORS)


def _mask_card(match: re.Match[str]) -> str:
    """``[银行卡号]`` for a bank card number found by the card pattern, else the number as written.

    A run that fits an ID number (an 18-digit one with a plausible birth date, unbroken or
    4-4-4-4-2) stays for the ID pattern that follows, whether or not it passes the Luhn check (a
    tenth of ID numbers do; the ID's own check digit is not verified). Of 4-4-4-4 groups and a
    short one that fail the check, the four groups alone may be a card with a count, a day or a
    month after it (6217 0000 1234 5670 12月): the card is masked and the rest kept.
    """
    number = match.group()
    digits = number.translate(_NO_SEPARATORS)
    if _ID_NUMBER.fullmatch(digits):
        return number
    if _luhn(digits):
        return MASK_CARD
    if len(digits) > 16 and not number.isdigit() and _luhn(digits[:16]):
        # The four groups end at the 16th digit, wherever their separators put it.
        end = [i for i, ch in enumerate(number) if ch.isdigit()][15] + 1
        return MASK_CARD + number[end:]
    return number


# The digits 0-9 in Chinese numerals, as citizens write them in a number: 〇 and 零 for 0, 幺 (or
# 么, its common stand-in) for 1 and 两 (traditional 兩) for 2 besides the usual ones.
_CN_DIGITS = "〇零一幺么二两兩三四五六七八九"
# Each of them as the digit it stands for.
_CN_TO_DIGITS = str.maketrans(_CN_DIGITS, "001112223456789")
# The provinces' one-character abbreviations that begin a licence plate, then the traditional forms
# of those that have one (滬A12345, as Hong Kong, Macao and Taiwan residents write it). Keywords
# below are listed likewise, simplified then traditional (OpenCC's s2t, s2hk, s2tw and s2twp): text
# is stored and logged as written, so it is masked as written.
_PROVINCES = (
    "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼滬雲遼魯蘇贛晉陝閩貴粵寧瓊"
)

# What a match is replaced by: a template, as re.sub takes it, or a function of the match.
_Replacement = str | Callable[[re.Match[str]], str]

# The characters of an e-mail address's local part, and what follows it: an @, also with a space on
# either side, and a domain that ends in a dot, or the ideographic full stop a Chinese keyboard types
# for it (zhangsan@163。com), and two or more letters.
_EMAIL_LOCAL = "A-Za-z0-9._%+-"
_EMAIL_REST = r" ?@ ?[A-Za-z0-9.-]+[.。][A-Za-z]{2,}"


class _EmailPattern:
    """The e-mail pattern ``[A-Za-z0-9._%+-]+ ?@ ?[A-Za-z0-9.-]+[.。][A-Za-z]{2,}``, with the same
    matches as :func:`re.sub` finds for it, in time linear in the text's length.

    Searched as written, that pattern is tried at every character of a run of local-part characters
    and scans from each to the run's end before it fails: quadratic in the run's length
    (``"a" * 19998 + "@@"`` took seconds, with the GIL held, so a server worker answered nothing
    meanwhile). A local part always runs to the end of its run (neither an @ nor a space is a
    local-part character), so a match starts at a run's first character if it starts anywhere in
    the run: only those are tried. The exception is a search that resumes inside a run, after a
    match that ended before a digit or one of ``._%+-`` (a@b.com1x@c.com holds two matches);
    there a match starting where the search resumes is tried first. Each @ is then reached from
    one start, and each character scanned a bounded number of times.
    """

    # A match anywhere, for where a search resumes; the local part never gives characters back.
    _at = re.compile(rf"[{_EMAIL_LOCAL}]++{_EMAIL_REST}")
    # A match whose local part begins a run: its first character not after another one.
    _run = re.compile(rf"[{_EMAIL_LOCAL}](?<![{_EMAIL_LOCAL}]{{2}})[{_EMAIL_LOCAL}]*+{_EMAIL_REST}")
    _local = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")

    def sub(self, repl: _Replacement, string: str) -> str:
        """``string`` with each match replaced by ``repl``, as :meth:`re.Pattern.sub` would."""
        pieces: list[str] = []
        end = 0
        while True:
            match = None
            if end and string[end - 1] in self._local:
                match = self._at.match(string, end)
            if match is None:
                match = self._run.search(string, end)
            if match is None:
                break
            pieces += (
                string[end : match.start()],
                repl(match) if callable(repl) else match.expand(repl),
            )
            end = match.end()
        if not pieces:
            return string
        pieces.append(string[end:])
        return "".join(pieces)


_EMAIL = _EmailPattern()

# The words before a bare telephone number (电话是, 联系方式:, 座机号, tel:), also in traditional
# characters (電話) and with the scripts mixed (電话, 联繫), as a switched input method writes them,
# and what may stand between them and the number.
_TELEPHONE_WORDS = (
    "电话|座机|固话|联系方式|联系|联络方式|联络|電話|座機|固話|聯繫方式|聯繫|聯絡方式|聯絡"
    "|電话|电話|座機|固話|联繫方式|聯系方式|联繫|聯系|联絡方式|聯络方式|联絡|聯络|tel"
)
_BEFORE_NUMBER = r"((?:号码|号|是|为|號碼|號|為|爲|号碼|號码)?[:：]?\s*)"

# Whatever digits follow a telephone or ID keyword, once every pattern above has had its turn: a
# number the patterns above do not read as one is still the citizen's. Two mobile numbers written
# together (电话1381234567813912345678), one with a digit too many (电话：138123456780) or spaced
# digit by digit (电话是1 3 8 1 2 3 4 5 6 7 8), an ID number with a letter after it
# (身份证430102199001011234x) or a digit short (身份证号：43010219900101123) were all stored as
# typed. Seven digits at least, as a bare landline after its keyword; an x may end an ID number.
# Likewise seven Chinese numerals or more, as speech recognition writes the number a caller says
# (电话一 三 九 一 二 三…, 身份证号四三零一零二…, 电话八八八八零零零零): see _mask_keyword_run.
# The words asking to be called back (请回电, 致电, 拨打, 电联, 来电号码, 回拨) name a telephone
# number as 电话 does.
# After a keyword, a number's groups may also be separated by an underscore, a slash, a middle dot
# or a tilde (电话138_1234_5678, 手机号:138/1234/5678): there they can be nothing else.
_RUN_SEPARATORS = "_/·~"
_RUN_SEP = "(?: ?[" + re.escape(_SEPARATORS.replace(" ", "") + _RUN_SEPARATORS) + "] ?| )"
_KEYWORD_RUN = re.compile(
    r"(电话|手机|座机|固话|联系方式|联系|联络|電話|手機|座機|固話|聯繫|聯絡|電话|电話|联繫|聯系|联絡|聯络"
    r"|回电|致电|拨打|电联|来电|回拨|回電|致電|撥打|電聯|來電|回撥"
    rf"|tel|身份证|身份證|证件|證件){_BEFORE_NUMBER}"
    rf"(\d(?:{_RUN_SEP}?\d){{6,}}x?(?!\d)"
    rf"|[{_CN_DIGITS}](?:{_RUN_SEP}?[{_CN_DIGITS}]){{6,}}x?(?![{_CN_DIGITS}]))"
)
_NO_RUN_SEPARATORS = str.maketrans("", "", _SEPARATORS + _RUN_SEPARATORS)
# The numerals of a mobile number and of an ID number.
_MOBILE_LENGTH = 11
_ID_LENGTH = 18
# Fewer Chinese numerals than this after a whole mobile or ID number are words, not more digits.
_KEYWORD_RUN_MIN = 7


def _mask_keyword_run(match: re.Match[str]) -> str:
    """The number after a keyword, masked as what its keyword names it."""
    keyword, between, number = match.groups()
    digits = number.translate(_NO_RUN_SEPARATORS).translate(_CN_TO_DIGITS)
    if keyword in ("身份证", "身份證", "证件", "證件"):
        mask, length = MASK_ID, _ID_LENGTH
    elif digits[:1] == "1" and digits[1:2] in "3456789":
        mask, length = MASK_MOBILE, _MOBILE_LENGTH
    else:
        mask, length = MASK_LANDLINE, 0
    rest = ""
    numerals = [i for i, ch in enumerate(number) if ch in _CN_DIGITS]
    if length and 0 < len(numerals) - length < _KEYWORD_RUN_MIN:
        # Numerals said after a whole number begin the next words (电话是一三九…八一直没人接: 一直,
        # "all along"), or are a slip of the tongue; either way too few to be a number of their own.
        rest = number[numerals[length - 1] + 1 :]
    return keyword + between + mask + rest


# After a bank card's or an account's keyword (银行卡号, 卡号, 账号, 账户), twelve digits or more
# (a space, a dot or a dash allowed between any two) are its number, masked as a card whether or
# not they pass the Luhn check (a mistyped digit, a savings account's number), or as the ID number
# they are (社保卡号 430102…); fewer are a login's or a member's number, kept. Before the ID, mobile
# and landline patterns, which took groups of such a number (6222 0212 3456 7890 left 6222).
_CARD_KEYWORD_RUN = _pattern(
    rf"(银行卡|卡号|账号|帐号|账户|帐户|銀行卡|卡號|賬號|帳號|賬戶|帳戶){_BEFORE_NUMBER}"
    r"(\d(?:{S}?\d){11,})(?!\d)"
)


# What each of those keywords holds: a ticket without any is not searched for them.
_CARD_WORDS = ("卡", "账", "帐", "賬", "帳")


def _mask_card_keyword_run(match: re.Match[str]) -> str:
    """The number after a card's or an account's keyword, masked as a card or an ID number."""
    keyword, between, number = match.groups()
    digits = number.translate(_NO_SEPARATORS)
    return keyword + between + (MASK_ID if _ID_NUMBER.fullmatch(digits) else MASK_CARD)


# Order matters: a bank card number contains runs that look like an ID number's groups or a
# landline, and an ID number runs that look like phone numbers, so cards are masked first, then ID
# numbers. Every pattern begins with the characters a match can begin with, and only then asserts
# that no digit comes before it ("1(?<!\d1)" rather than "(?<!\d)1"): a pattern that begins with a
# look-behind is tried at every position of the text, one that begins with a character only where
# that character is (3-6x faster on a long ticket). Tests check that both forms mask alike.
_PII_PATTERNS: tuple[tuple[re.Pattern[str] | _EmailPattern, _Replacement], ...] = (
    (_EMAIL, MASK_EMAIL),
    # A WeChat id that the app wrote, wxid_…, anywhere, glued to letters too: first, so that what
    # it is glued to is read as it will be in the cleaned text (430102199001011234wxid_… is an ID
    # number, vx:lisi2023wxid_… an id after its keyword), and cleaning that again changes nothing.
    (re.compile(r"wxid_[a-z0-9_-]{4,}"), MASK_WECHAT),
    # Bank card numbers: 16-19 digits, unbroken or in groups of four with a space, a hyphen, a dot or
    # a dash between them (as telephone and ID numbers) and a last group of one to three
    # (6222 0212 3456 7890 128, 6217-0000-1234-5670, 6222.0212.3456.7890.128),
    # that begin as card issuers' numbers do (3 JCB, 4 Visa, 5 Mastercard, 6 UnionPay, 9 the old
    # domestic 9558/9559) and pass the Luhn check. Order and ticket numbers that begin with a date
    # (2023121512345678) or a 1 are never cards, and nine in ten of the others fail the check; they
    # stay as written (see _mask_card). Four groups before a last one that ends in an X are the
    # 4-4-4-4-2 form of an ID number (4301 0219 9001 0112 3X), never a card and what follows.
    (
        _pattern(
            r"[3-69](?<!\d\d)\d{3}"
            r"(?:\d{12,15}|(?:{S}\d{4}){3}(?:{S}\d{1,3})?(?!{S}\d{1,3}[Xx]))"
            r"(?![\dXx])"
        ),
        _mask_card,
    ),
    (_CARD_KEYWORD_RUN, _mask_card_keyword_run),
    (_ID_NUMBER, MASK_ID),
    # Mobile numbers, also written with spaces, hyphens, dots or dashes (138-0000-1234,
    # 138.0000.1234, 138–0000–1234) or a +86 or 0086 prefix.
    (
        _pattern(
            r"(?:\+(?<!\d\+)86[ -]?1|0(?<!\d0)086[ -]?1|8(?<!\d8)6[ -]?1|1(?<!\d1))[3-9]\d"
            r"(?:{S}?\d{4}){2}(?!\d)"
        ),
        MASK_MOBILE,
    ),
    # Landlines with an area code (0731-88880000, (0731)88880000) and bare 7–8 digit numbers after
    # a telephone keyword (电话是, 联系方式:, 座机号, tel:; also in traditional characters, 電話,
    # and with the scripts mixed, 電话 or 联繫, as a switched input method writes them: literals
    # all, since a character class first cost the search its first-character filter, 70 → 125 µs
    # on 2,000 characters); the number also as citizens group it,
    # 8888 0000 or 888-0000, with a dot or a dash as in mobile numbers too (0731 8888 0000,
    # (0731)8888-0000, 0731.8888.0000, 0731–8888–0000, 电话:8888-0000); dates (2020.01.01) and
    # amounts (1234.5678元) neither begin with a 0 and two or three digits nor follow a keyword.
    # Not after a bare 号码: 发票号码, 快递单号码 and 工单号码 name the invoice or order a
    # complaint is about.
    # Also with the country code, +86 or 0086, before the area code without its 0 (+86 731 8888
    # 0000, 0086-731-88880000, +86 (731) 88880000); a mobile number after one is masked above.
    # A + begins a number even straight after a digit (湘A12345+86 731 8888 0000): refused there,
    # it was masked only once the plate before it was, when the cleaned text was cleaned again.
    (
        _pattern(
            r"(?:\((?<!\d\()0|0(?<!\d0)(?:086{S}?\(?0?(?=[1-9]))?"
            r"|\+86{S}?\(?0?(?=[1-9]))\d{2,3}\)?{S}?"
            r"(?:\d{7,8}|\d{3,4}{S}\d{4})(?!\d)"
        ),
        MASK_LANDLINE,
    ),
    (
        _pattern(rf"({_TELEPHONE_WORDS}){_BEFORE_NUMBER}(?:\d{{7,8}}|\d{{3,4}}{{S}}\d{{4}})(?!\d)"),
        r"\1\2" + MASK_LANDLINE,
    ),
    # A mobile number in Chinese numerals (一三八一二三四五六七八, 幺三八…, with 〇 or 零 for 0 and
    # 两 for 2), as written to dodge a board's filter or transcribed from speech; also in groups.
    (
        _pattern(
            rf"[一幺么](?<![{_CN_DIGITS}][一幺么])[三四五六七八九][{_CN_DIGITS}]"
            rf"(?:{{S}}?[{_CN_DIGITS}]{{4}}){{2}}(?![{_CN_DIGITS}])"
        ),
        MASK_MOBILE,
    ),
    # A QQ number (5-11 digits) after QQ, QQ号, QQ号码, QQ群, 扣扣 or Q号 (traditional Q號, QQ羣);
    # also in groups, as a phone number is written (QQ：123 456 789, QQ:1234-5678).
    (
        _pattern(
            r"(q(?<![a-z]q)q|扣扣|q(?<![a-z]q)[号號])"
            r"( ?(?:号码|号|號碼|號|号碼|號码|[群羣][号號]?)?(?:是|为|為|爲)?[:：]?\s*)"
            r"[1-9](?:{S}?\d){4,10}(?!\d)"
        ),
        r"\1\2" + MASK_QQ,
    ),
    # A WeChat id (wxid_… is masked above): 6-20 letters, digits, _ or - that begin with a letter
    # after 微信号, 微信是, 微信:, vx, wx or v信 (numbers there are masked above as the telephones
    # they are). Straight after 微信, or after it and a space, one with a digit or an _ only: an
    # English word there names the app's platform or client (微信 android 版本, 微信 windows 客户端).
    (
        _pattern(
            r"(微信|v(?<![a-z]v)x|w(?<![a-z]w)x|v(?<![a-z]v)信)"
            r"( ?(?:号码|号|账号|號碼|號|賬號|帳號|号碼|號码|账號|賬号|帳号|id)?(?:是|为|為|爲)?[:：]?\s*)"
            r"(?:(?<!微信)(?<!微信 )|(?=[a-z-]*[0-9_]))[a-z][a-z0-9_-]{5,19}(?![a-z0-9_-])"
        ),
        r"\1\2" + MASK_WECHAT,
    ),
    # A licence plate as GA 36 issues it: a province's abbreviation, the issuing authority's letter
    # (never I or O), perhaps a dot, a space or a hyphen as plates are painted, and a serial: 5
    # digits and letters (never I or O), at most 2 of them letters (湘A12345, 湘A·8A88B), or a
    # new-energy vehicle's 6, D or F then a letter or a digit and 4 digits, or 5 digits then D or
    # F (粤B D12345, 湘A12345D). No letter or digit may follow. 新 is also "new": product models
    # after it (全新mate60, 新p60pro, 全新rtx4090, 新kfr35gw) have 3 letters, or 6 characters
    # that are no new-energy serial, and one after 全新, 最新, 崭新, 更新, 重新 (全新y9000p) is no plate.
    (
        re.compile(
            rf"[{_PROVINCES}](?<![全最崭嶄更重]新)[a-hj-np-z][·・• -]?"
            r"(?:[df][a-hj-np-z0-9]\d{4}|\d{5}[df]|(?=[a-z0-9]{5}(?![a-z0-9]))(?:\d*[a-hj-np-z]){0,2}\d*)"
            r"(?![a-z0-9])"
        ),
        MASK_PLATE,
    ),
    # A passport number after 护照 (E12345678, EA1234567, G12345678, or 9 digits), then after 護照,
    # its traditional form: each pattern begins with its keyword, which a search finds several
    # times faster than either of two (1.4 against 5.5 us on 2,000 characters).
    (
        _pattern(
            r"(护照)((?:号码|号|號碼|號|号碼|號码)?(?:是|为|為|爲)?[:：]?\s*)"
            r"(?:[a-z]{1,2}\d{7,8}|\d{9})(?![a-z0-9])"
        ),
        r"\1\2" + MASK_PASSPORT,
    ),
    (
        _pattern(
            r"(護照)((?:号码|号|號碼|號|号碼|號码)?(?:是|为|為|爲)?[:：]?\s*)"
            r"(?:[a-z]{1,2}\d{7,8}|\d{9})(?![a-z0-9])"
        ),
        r"\1\2" + MASK_PASSPORT,
    ),
    # Last, whatever the patterns above left after a telephone or ID keyword (_KEYWORD_RUN).
    (_KEYWORD_RUN, _mask_keyword_run),
)
# Cheap necessary conditions, so that a text is scanned only by the patterns that can match it: an
# e-mail address has an "@", a mobile number "1[3-9]" and a digit, and an ID number or a landline
# seven digits, the last four of them perhaps after a space, a hyphen, a dot or a dash (8888 0000,
# 888-0000, 888.0000, 888–0000): a text without a digit, or with only dates (2020-01-01,
# 2020.01.01), times and short amounts, is searched once. A
# bank card holds such a number too; the card pattern calls its Luhn check only on a run of 16 or
# more digits, and a separate search for one first (tried) cost more than it saved.
# Masking only ever removes digits, so a condition that fails before a pattern still fails after it.
# (A character class: {S}, a group of alternatives, made this search, run on every text, slower.)
_LONG_NUMBER = re.compile(r"\d{3}[" + re.escape(_SEPARATORS) + r"]{0,3}\d{4}")
_MOBILE_START = re.compile(r"1[3-9]\d")
# What each of the patterns after these needs: a mobile number in Chinese numerals its first three
# (一 or 幺, one of 三-九, a numeral), a QQ number, a WeChat id or a passport number its keyword, a
# plate a province and a letter; one search for all, so that a ticket without any is scanned once.
# It begins with what a match's first character can be and looks behind for it before the next one.
# Begun with the second character instead (rarer than 一 or a province in Chinese), it stopped at
# every Latin letter, for a plate's: on English text (a pasted e-mail or log) it cost 3 times the
# five patterns it guards, and made clean() 4.6 times slower there; this form costs as much on
# Chinese and a tenth on English. The masks these patterns write create none of these for a later
# one.
_NEEDS_MORE = re.compile(
    rf"[qvw扣微护護一幺{_PROVINCES}](?:(?<=q)[q号號]|(?<=v)[x信]|(?<=w)x|(?<=扣)扣|(?<=微)信|(?<=[护護])照"
    rf"|(?<=[{_PROVINCES}])[a-z]|(?<=[一幺])[三四五六七八九][{_CN_DIGITS}])"
)
# 么 as the first numeral: a search of its own, since 么 is also every 什么 and 怎么, and as one
# more first character above it made that search twice as slow on such text (26 → 54 µs on 2,000
# characters); a literal first character is found by a fast substring search (29 µs there).
_YAO_START = re.compile(rf"么[三四五六七八九][{_CN_DIGITS}]")
# Then each of those patterns that begins with a keyword runs only if one of its keywords is there
# (a substring test costs well under a microsecond, the pattern's scan 10-15 on 2,000 characters):
# a ticket that names 微信 is not scanned for QQ numbers and passports.
_MORE_KEYWORDS: tuple[tuple[str, ...], ...] = (
    (),
    ("qq", "q号", "q號", "扣扣"),
    ("微信", "vx", "wx", "v信"),
    (),
    ("护照",),
    ("護照",),
)


def normalize(text: str | None) -> str:
    """Normalise one text for matching and display.

    Parameters
    ----------
    text : str or None
        Raw text as it came from a form, a spreadsheet or a transcript. ``None`` counts as empty.

    Returns
    -------
    str
        NFKC-normalised text (full-width letters and digits become half-width), with Excel's
        ``_x000D_`` artefacts removed, HTML tags read as a space and character references
        (``&nbsp;``, ``&lt;``, ``&#12290;``) as the characters they stand for, invisible format
        characters dropped, all runs of whitespace (including ``\\u3000``, ``\\xa0`` and
        newlines) collapsed to one space, Latin letters lower-cased, and no leading or trailing
        space.
    """
    text = _normalize(text)
    # Until nothing is left to read, so that normalising again changes nothing (an export that
    # escaped its HTML twice, &amp;lt;br&amp;gt;, or a full-width ＆ that NFKC makes an &).
    while "<" in text or "&" in text:
        read = _CHARREF.sub(_character, _TAG.sub(" ", text))
        if read == text:
            break
        text = _normalize(read)
    return text


def _character(match: re.Match[str]) -> str:
    """The character a character reference stands for; an unknown name stays as written."""
    return html.unescape(match.group())


def _normalize(text: str | None) -> str:
    """:func:`normalize` but for web markup."""
    if not text:
        return ""
    if "_x000" in text:
        text = _EXCEL_CR.sub(" ", text)
    if text.isprintable():
        # No control character, lone surrogate or format character to deal with, and NFKC makes
        # none from printable ones (tests check this over all of Unicode).
        text = nfkc(text)
    else:
        # Lone surrogates (from JSON escapes such as "\\ud800") cannot be NFKC-normalised safely.
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "ignore")
        text = CONTROL.sub(" ", nfkc(text))
    # str.split() splits where the regular expression \s matches (both ask Py_UNICODE_ISSPACE),
    # several times faster than substituting it.
    text = " ".join(text.split())
    if not text.isprintable():
        # Only characters of the dropped categories are left unprintable (tests check this over all
        # of Unicode); dropping one can join two spaces, so collapse again.
        text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROP_CATEGORIES)
        text = " ".join(text.split())
    return text.lower()


def is_blank(text: str | None) -> bool:
    """Whether a text holds nothing once normalised: empty, or only whitespace, invisible
    characters, control characters or Excel's ``_x000D_``.

    The one rule by which training, evaluation, batch labelling, ``paidan predict`` and the HTTP
    API tell a missing text from a present one.
    """
    if not text:
        return True
    # An ideograph always survives normalisation (NFKC maps each to itself and nothing below
    # removes one), so most tickets are answered without normalising them here.
    if _IDEOGRAPH.search(text):
        return False
    return not normalize(text)


def without_format_characters(text: str) -> str:
    """``text`` without invisible format characters (category Cf: zero-width spaces and joiners,
    BOM, soft hyphen, bidi controls), which :func:`normalize` drops from a text too."""
    if text.isprintable():  # every format character is unprintable
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def normalize_label(label: str) -> str:
    """A department or category name as sent, trimmed and without invisible format characters
    (:func:`without_format_characters`); ``"\ufeff市住建局\u200b"`` gives ``"市住建局"``, as the
    ticket readers read a label cell (``model.tickets.to_canonical``).

    Nothing else changes: training reads the history's labels as written (only trimmed), so NFKC
    (``（`` to ``(``, ``；`` to ``;``) or lower-casing here would part a label from its history.
    """
    return without_format_characters(label).strip()


def id_key(ticket_id: str) -> str:
    """The key by which two ticket ids are the same ticket: NFKC, without invisible format
    characters (:func:`without_format_characters`), trimmed.

    ``"２０２６１２０６００１"``, ``"20261206001\u200b"`` and ``" 20261206001 "`` are one ticket, and so are
    ``"é"`` as one code point and as ``e`` with a combining accent. Case and leading zeros are
    kept: ``"A7"`` and ``"a7"``, ``"007"`` and ``"7"`` may be different tickets of a ticket system.
    An id is stored and echoed as sent; this key is only for comparing ids.

    Parameters
    ----------
    ticket_id : str
        An id as sent or read from a ticket file.

    Returns
    -------
    str
        Its key; empty for an id that holds nothing visible.
    """
    return nfkc(without_format_characters(ticket_id)).strip()


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, several times faster on Chinese text.

    Full-width ASCII forms and wide spaces are replaced by their compatibility decompositions first
    (see ``_WIDTH_FOLD``), which leaves the NFKC form unchanged; tests check the equality over
    arbitrary Unicode.
    """
    if text.isascii():
        return text
    if len(text) < _FOLD_WITH_ARRAYS:
        text = _WIDE.sub(lambda m: _WIDTH_FOLD[m.group()], text)
    else:
        # The same replacement over UTF-16 code units: each of these characters is one unit, and
        # none is a surrogate, so characters outside the BMP pass through untouched.
        import numpy as np  # here, not at the top: the supervisor of --workers N routes nothing

        units = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), dtype="<u2").copy()
        units[(units >= 0xFF01) & (units <= 0xFF5E)] -= 0xFEE0
        units[(units == 0x3000) | (units == 0xA0)] = 0x20
        text = units.tobytes().decode("utf-16-le", "surrogatepass")
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def mask_pii(text: str) -> str:
    """Replace phone numbers, ID numbers, bank card numbers, e-mail addresses, QQ numbers, WeChat
    ids, licence plates and passport numbers with placeholder tokens.

    Parameters
    ----------
    text : str
        Normalised text (see :func:`normalize`); masking relies on half-width digits.

    Returns
    -------
    str
        The text with e-mail addresses, bank card numbers (16-19 digits that pass the Luhn check
        and are not an ID number), 18- and 15-digit ID numbers, mobile numbers (also in Chinese
        numerals) and landlines (each also written in groups) replaced by ``[邮箱]``,
        ``[银行卡号]``, ``[身份证号]``, ``[手机号]`` and ``[电话]``; QQ numbers and WeChat ids
        after their keywords, licence plates and passport numbers after 护照 by ``[qq号]``,
        ``[微信号]``, ``[车牌号]`` and ``[护照号]``; keywords and provinces also in traditional
        characters (電話, 聯繫, 護照, 滬A12345).
    """
    return _mask(text, _sub)


def _sub(pattern: re.Pattern[str] | _EmailPattern, replacement: _Replacement, text: str) -> str:
    return pattern.sub(replacement, text)


def _mask(
    text: str,
    sub: Callable[[re.Pattern[str] | _EmailPattern, _Replacement, str], str],
) -> str:
    """:func:`mask_pii`, each pattern applied by ``sub`` (:func:`_sub`, or one that also records
    where it replaced: :func:`clean_and_show`)."""
    email, wxid, card, card_keyword, id_number, mobile, landline, after_keyword, *more, run = (
        _PII_PATTERNS
    )
    if "@" in text:
        text = sub(*email, text)
    if "wxid_" in text:
        text = sub(*wxid, text)
    long_number = _LONG_NUMBER.search(text) is not None
    if long_number:
        text = sub(*card, text)
    if any(word in text for word in _CARD_WORDS):  # also digit by digit: no long number then
        text = sub(*card_keyword, text)
    if long_number:
        text = sub(*id_number, text)
    if _MOBILE_START.search(text):
        text = sub(*mobile, text)
    if long_number:
        text = sub(*landline, text)
        text = sub(*after_keyword, text)
    if _NEEDS_MORE.search(text) or ("么" in text and _YAO_START.search(text)):
        for (pattern, replacement), keywords in zip(more, _MORE_KEYWORDS, strict=True):
            if not keywords or any(keyword in text for keyword in keywords):
                # Again while it masks: a mask ends a run of letters and digits, and what is left
                # before it may then be a match of its own (微信zhangsan8812vxqq12345: the id after
                # 微信 is too long until the vx's is masked). Each pass masks fewer characters than
                # the last could, so this ends; a text it did not change is scanned once.
                while (masked := sub(pattern, replacement, text)) != text:
                    text = masked
    # Always: its keywords begin the pattern, so a text without one is searched in a few µs.
    text = sub(*run, text)
    return text


# The script a model reads its tickets in (TrainingConfig.script): traditional characters converted
# to simplified ones, or every character as written (models trained before the setting).
Script = Literal["simplified", "as_written"]
# OpenCC's Hong Kong configuration: Hong Kong's own forms (衞生, 枱, 粧) first, then the
# traditional characters and phrases (t2s). Otherwise the same characters as t2s.
_OPENCC_CONFIG = "hk2s"
# The CJK ideograph blocks OpenCC's tables cover: unified (and extension A to the supplementary
# planes' extensions) and compatibility ideographs.
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))


@cache
def _converter() -> tuple[Any, re.Pattern[str], frozenset[str]]:
    """OpenCC's converter; the characters it converts on their own (found in traditional writing
    alone), and a pattern that finds them or another character of the supplementary planes.

    Built on first use (about 120 ms), so that a model that reads text as written never loads
    OpenCC. A character class of the supplementary planes' characters one by one made a search
    of 2,000 characters take 700 µs: those are one range here, and a match there is looked up.
    """
    import opencc

    converter = opencc.OpenCC(_OPENCC_CONFIG)
    chars = [chr(c) for start, end in _CJK_RANGES for c in range(start, end + 1)]
    # One call for the whole table: each character on its own line, where no phrase can span two.
    converted = converter.convert("\n".join(chars)).split("\n")
    traditional = [c for c, t in zip(chars, converted, strict=True) if c != t]
    ranges: list[list[int]] = []
    for code in (ord(c) for c in traditional if c <= "\uffff"):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    members = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)
    pattern = re.compile(f"[{members}\U00010000-\U0010ffff]")
    return converter, pattern, frozenset(traditional)


def to_script(text: str, script: Script) -> str:
    """A normalised text in the script a model reads.

    ``"as_written"`` leaves it as it is. ``"simplified"`` converts a text that holds a character
    found in traditional writing alone (社區 → 社区, 衛生 and Hong Kong's 衞生 → 卫生) with OpenCC,
    word by word (乾淨 → 干净 but 乾隆 stays). A text without one is left as it is: looking costs
    about 7 µs on 2,000 characters, converting them about 165, and OpenCC's phrase table would
    rewrite a few simplified words anyway (打坏 as the traditional spelling of 打坯).
    """
    if script == "as_written" or text.isascii():
        return text
    converter, pattern, traditional = _converter()
    if any(m.group() in traditional for m in pattern.finditer(text)):
        return str(converter.convert(text))
    return text


def simplified_chars(text: str, script: Script) -> dict[str, str]:
    """Each character of a normalised ``text`` that a model reading ``script`` reads as another,
    with the one it reads (區 → 区); empty for a text in simplified characters.

    The model's evidence is in the script it reads, so the dispatcher's page, which marks the
    evidence in the ticket as typed, found 烧烤店 nowhere in 燒烤店. Character by character, where
    :func:`to_script` converts phrase by phrase: a mark is placed, nothing is read differently.
    """
    if script == "as_written" or text.isascii():
        return {}
    converter, pattern, traditional = _converter()
    found = sorted({m.group() for m in pattern.finditer(text)} & traditional)
    if not found:
        return {}
    # One call for all: each character on its own line, where no phrase can span two.
    read = str(converter.convert("\n".join(found))).split("\n")
    if len(read) != len(found):
        return {}
    return {ch: r for ch, r in zip(found, read, strict=True) if len(r) == 1 and r != ch}


def ticket_simplified(title: str | None, text: str, script: Script) -> dict[str, str]:
    """:func:`simplified_chars` of a ticket's title and text as typed: what an answer's
    ``simplified`` says (``/v1/route``, ``paidan predict``)."""
    return simplified_chars(normalize(f"{title or ''} {text}"), script)


def clean(text: str | None, script: Script = "as_written") -> str:
    """Normalise, convert to ``script`` (see :func:`to_script`), then mask: the only form in which
    a text is featurised, stored, logged or shown.

    Masking comes last, so that a traditional keyword (電話, 護照) is read as its simplified form;
    nothing is kept or shown between the steps.
    """
    return mask_pii(to_script(normalize(text), script))


def clean_and_show(text: str | None, script: Script = "as_written") -> tuple[str, str]:
    """``clean(text, script)`` and ``text`` as typed with only its personal data masked, from one
    masking pass.

    :func:`clean` normalises before it masks: what it gives is half-width, lower-cased, on one
    line. A page that shows the ticket back showed the dispatcher an altered ticket (ＡＢＣ小区 as
    abc小区, its paragraphs run together). Here each character of the cleaned text keeps the span
    of ``text`` it came from, and each number that masking replaced is replaced in ``text`` itself,
    by the same placeholder: ``"电话：１３８ １２３４ ５６７８\\n  ＡＢＣ小区"`` shows as
    ``"电话：[手机号]\\n  ＡＢＣ小区"``, the model reading ``"电话:[手机号] abc小区"``.

    Where a step cannot say where each character came from (an OpenCC conversion that changes a
    text's length, a combining sequence that normalises across characters), the text shown is the
    cleaned one, never one with a number left unmasked.

    Parameters
    ----------
    text : str or None
        A ticket's title or text as written.
    script : {"as_written", "simplified"}, default "as_written"
        See :func:`to_script`.

    Returns
    -------
    tuple of str
        The cleaned text, exactly as :func:`clean` gives it, and the text to show.
    """
    if not text:
        return "", ""
    try:
        tracked = _Tracked.of(text)
        tracked.normalize()
        tracked.to_script(script)
    except _Untrackable:
        cleaned = clean(text, script)
        return cleaned, cleaned
    cleaned = _mask(tracked.text, tracked.sub_masking)
    return cleaned, tracked.shown(text)


class _Untrackable(Exception):
    """A step of :func:`clean_and_show` that cannot map its output back onto its input."""


class _Tracked:
    """A text being cleaned, each character with the span ``[start, end)`` of the original text it
    comes from, and whether masking wrote it (:func:`clean_and_show`).

    Each step computes the same text as :func:`normalize`, :func:`to_script` and
    :func:`mask_pii` do, and checks it where it takes its own way to the result.
    """

    def __init__(self, text: str, starts: list[int], ends: list[int]) -> None:
        self.text = text
        self.starts = starts
        self.ends = ends
        self.masked = [False] * len(text)

    @classmethod
    def of(cls, text: str) -> _Tracked:
        return cls(text, list(range(len(text))), list(range(1, len(text) + 1)))

    def _check(self, expected: str) -> None:
        if self.text != expected or not len(self.starts) == len(self.ends) == len(self.text):
            raise _Untrackable

    def sub(
        self,
        pattern: re.Pattern[str] | _EmailPattern,
        replacement: _Replacement,
        *,
        masking: bool = False,
    ) -> None:
        """``pattern.sub(replacement, text)``; what a match keeps of itself (a keyword before a
        number) keeps its origin, and the rest comes from the whole of what it replaced."""
        edits: list[tuple[int, int, str]] = []

        def record(match: re.Match[str]) -> str:
            out = replacement(match) if callable(replacement) else match.expand(replacement)
            edits.append((match.start(), match.end(), out))
            return out

        result = pattern.sub(record, self.text)
        if not edits:
            return
        text, starts, ends, flags = self.text, self.starts, self.ends, self.masked
        new_starts: list[int] = []
        new_ends: list[int] = []
        new_flags: list[bool] = []
        pos = 0
        for start, end, out in edits:
            new_starts += starts[pos:start]
            new_ends += ends[pos:start]
            new_flags += flags[pos:start]
            old = text[start:end]
            keep = 0  # the common prefix, then the common suffix, of what was and what is
            while keep < min(len(old), len(out)) and old[keep] == out[keep]:
                keep += 1
            tail = 0
            while tail < min(len(old), len(out)) - keep and old[-1 - tail] == out[-1 - tail]:
                tail += 1
            new_starts += starts[start : start + keep]
            new_ends += ends[start : start + keep]
            new_flags += flags[start : start + keep]
            written = len(out) - keep - tail
            if written:
                if end - tail > start + keep:
                    span = (starts[start + keep], ends[end - tail - 1])
                else:  # nothing replaced: an insertion, where it is
                    at = starts[start + keep] if start + keep < len(starts) else _last(ends)
                    span = (at, at)
                new_starts += [span[0]] * written
                new_ends += [span[1]] * written
                new_flags += [masking or any(flags[start + keep : end - tail])] * written
            new_starts += starts[end - tail : end]
            new_ends += ends[end - tail : end]
            new_flags += flags[end - tail : end]
            pos = end
        new_starts += starts[pos:]
        new_ends += ends[pos:]
        new_flags += flags[pos:]
        self.text, self.starts, self.ends, self.masked = result, new_starts, new_ends, new_flags
        self._check(result)

    def sub_masking(
        self, pattern: re.Pattern[str] | _EmailPattern, replacement: _Replacement, text: str
    ) -> str:
        """:func:`_sub` for :func:`_mask`: what it writes is marked as masking's."""
        self.sub(pattern, replacement, masking=True)
        return self.text

    def _keep(self, keep: list[bool]) -> None:
        self.text = "".join(ch for ch, k in zip(self.text, keep, strict=True) if k)
        self.starts = [s for s, k in zip(self.starts, keep, strict=True) if k]
        self.ends = [e for e, k in zip(self.ends, keep, strict=True) if k]
        self.masked = [m for m, k in zip(self.masked, keep, strict=True) if k]

    def _per_character(self, convert: Callable[[str], str], pieces: list[str]) -> None:
        """Each of ``pieces`` (which make up the text) replaced by ``convert`` of it, its
        characters from the whole of its span."""
        starts: list[int] = []
        ends: list[int] = []
        pos = 0
        out = []
        for piece in pieces:
            converted = convert(piece)
            out.append(converted)
            span = (self.starts[pos], self.ends[pos + len(piece) - 1])
            if len(converted) == len(piece):
                starts += self.starts[pos : pos + len(piece)]
                ends += self.ends[pos : pos + len(piece)]
            else:
                starts += [span[0]] * len(converted)
                ends += [span[1]] * len(converted)
            pos += len(piece)
        self.text, self.starts, self.ends = "".join(out), starts, ends
        self.masked = [False] * len(self.text)

    def nfkc(self) -> None:
        """:func:`nfkc`, one combining sequence at a time where it changes the text."""
        expected = nfkc(self.text)
        if expected == self.text:
            return
        folded = _WIDE.sub(lambda m: _WIDTH_FOLD[m.group()], self.text)  # one to one
        if folded == expected:
            self.text = folded
            return
        self.text = folded
        self._per_character(lambda p: unicodedata.normalize("NFKC", p), _sequences(folded))
        self._check(expected)

    def lower(self) -> None:
        expected = self.text.lower()
        if len(expected) == len(self.text):  # lower() never shortens a character: one to one
            self.text = expected
            return
        self._per_character(str.lower, list(self.text))
        self._check(expected)

    def collapse(self) -> None:
        """``" ".join(text.split())``: runs of whitespace as one space, none at either end."""
        expected = " ".join(self.text.split())
        self.sub(_WHITESPACE, " ")
        first = 1 if self.text.startswith(" ") else 0
        last = len(self.text) - (1 if len(self.text) > first and self.text.endswith(" ") else 0)
        if (first, last) != (0, len(self.text)):
            self.text = self.text[first:last]
            self.starts, self.ends = self.starts[first:last], self.ends[first:last]
            self.masked = self.masked[first:last]
        self._check(expected)

    def _normalize(self) -> None:
        """:func:`_normalize`."""
        if not self.text:
            return
        if "_x000" in self.text:
            self.sub(_EXCEL_CR, " ")
        if self.text.isprintable():
            self.nfkc()
        else:
            expected = self.text.encode("utf-8", "surrogatepass").decode("utf-8", "ignore")
            if expected != self.text:
                self._keep([not "\ud800" <= ch <= "\udfff" for ch in self.text])
                self._check(expected)
            self.nfkc()
            self.sub(CONTROL, " ")
        self.collapse()
        if not self.text.isprintable():
            self._keep([unicodedata.category(ch) not in _DROP_CATEGORIES for ch in self.text])
            self.collapse()
        self.lower()

    def normalize(self) -> None:
        """:func:`normalize`."""
        expected = normalize(self.text)
        self._normalize()
        while "<" in self.text or "&" in self.text:
            before = self.text
            self.sub(_TAG, " ")
            self.sub(_CHARREF, _character)
            if self.text == before:
                break
            self._normalize()
        self._check(expected)

    def to_script(self, script: Script) -> None:
        """:func:`to_script`, where it converts one character to one: OpenCC converts word by
        word, and a word of another length has no character-by-character origin."""
        expected = to_script(self.text, script)
        if expected == self.text:
            return
        if len(expected) != len(self.text) or any(
            a != b and not (_is_ideograph(a) and _is_ideograph(b))
            for a, b in zip(self.text, expected, strict=True)
        ):
            raise _Untrackable
        self.text = expected

    def shown(self, original: str) -> str:
        """``original`` with each run of characters that masking wrote in place of what they
        came from."""
        pieces: list[str] = []
        pos = 0
        runs: list[list[int]] = []  # [first, last + 1) of each run of masking's characters
        for i in (i for i, m in enumerate(self.masked) if m):
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        for i, j in runs:
            start, end = min(self.starts[i:j]), max(self.ends[i:j])
            if start < pos:
                # Two masks from one character of the original (a ligature's digits): both gone.
                pieces[-1] = pieces[-1] + self.text[i:j]
                pos = max(pos, end)
            else:
                pieces += [original[pos:start], self.text[i:j]]
                pos = end
        pieces.append(original[pos:])
        return "".join(pieces)


_WHITESPACE = re.compile(r"\s+")


def _last(ends: list[int]) -> int:
    return ends[-1] if ends else 0


def _is_ideograph(ch: str) -> bool:
    code = ord(ch)
    return any(start <= code <= end for start, end in _CJK_RANGES)


def _sequences(text: str) -> list[str]:
    """``text`` cut before each character that combines with nothing before it (a starter), so
    that NFKC of the pieces, joined, is NFKC of the whole in all but rare cases (Hangul jamo),
    which :meth:`_Tracked.nfkc` checks."""
    pieces: list[str] = []
    for ch in text:
        if pieces and unicodedata.combining(ch):
            pieces[-1] += ch
        else:
            pieces.append(ch)
    return pieces


# What a letter to the hotline often begins with, as clean() writes it (half-width punctuation, one
# space): a greeting (尊敬的张市长：您好！, 李书记您好, 各位领导：你们好, 打扰您了, 感谢您的阅读) and a
# lead-in (我想反映一下：, and the hotline's transcripts' 来电人反映：; 来电人咨询 says what it is). A snippet starts after them (see without_salutation). A title, with at
# most 6 characters of a name or an office before it, is a greeting only after 尊敬的 or before
# 您好 or a colon, so that 市长热线反映的问题 and 我们小区书记不作为 are kept; 你好像 is no 你好.
_TITLES = (
    "领导|市长|副市长|书记|县长|区长|省长|镇长|乡长|厅长|局长|处长|科长|主任|部长|主席|委员|"
    "同志|工作人员|政府|先生|女士"
)
_TITLE = f"(?:{_TITLES})"
_SALUTATION = re.compile(
    "(?:"
    + f"(?:尊敬|敬爱|亲爱)的[^ ,.:;!?。、]{{0,10}}?{_TITLE}(?:们|大人)?(?:(?:您|你)们?好)?"
    + f"|(?:各位)?[^ ,.:;!?。、]{{0,6}}?{_TITLE}(?:们)?(?:(?:您|你)们?好|(?=:))"
    + "|(?:您|你|大家)们?好(?:呀|啊)?(?![像几多久吗么不])"
    + "|打扰(?:您|你)?了"
    + "|(?:感谢|谢谢)(?:您|你)(?:的阅读|在百忙之中(?:阅读|抽空)?)"
    + "|我(?:想|要)?反映一下"
    + "|我(?:想|要)?反映(?:个|一个)?(?:问题|情况)?(?=[ ,.:;!?。、])"
    + "|(?:市民|群众)?来电人?(?:反映|称|表示)(?=[ ,.:;!?。、])"
    + ")[ ,.:;!?。、~]*"
)


def without_salutation(cleaned: str) -> str:
    """A cleaned text (:func:`clean`) without the greetings and lead-in that begin it.

    ``"尊敬的张市长:您好!我想反映一下,楼下烧烤店油烟很大"`` gives ``"楼下烧烤店油烟很大"``. A text
    that is nothing but a greeting (a stored snippet cut after one: ``"您好,…"``) is returned as
    it is, so that it does not read as empty.
    """
    rest = cleaned
    while match := _SALUTATION.match(rest):
        if not match.end():
            break
        rest = rest[match.end() :]
    return rest if rest.strip("…") else cleaned


def snippet(text: str | None, chars: int, script: Script = "as_written") -> str:
    """The start of ``text`` as :func:`clean` writes it, after any greeting that begins it
    (:func:`without_salutation`), at most ``chars`` characters, then ``…`` if anything was left
    out.

    Cut after masking, never before: the first characters of a raw text may end inside a phone
    number, whose first digits masking would then no longer recognise. A placeholder that the cut
    would split (``[手机`` of ``[手机号]``) is left out whole.

    Parameters
    ----------
    text : str or None
        A ticket's text as written.
    chars : int
        The most characters kept (the ``…`` not counted).
    script : {"as_written", "simplified"}, default "as_written"
        See :func:`to_script`.

    Returns
    -------
    str
        ``""`` for an empty text.
    """
    whole = without_salutation(clean(text, script))
    if len(whole) <= chars:
        return whole
    cut = chars
    for placeholder in PLACEHOLDERS:
        # One that starts before the cut and ends after it.
        at = whole.find(placeholder, max(0, chars - len(placeholder) + 1), chars + len(placeholder))
        if 0 <= at < chars:
            cut = min(cut, at)
    return whole[:cut].rstrip() + "…"


def mask_label(label: str) -> str:
    """A label (or a ticket id) as a message, a report or metadata may quote it.

    Labels are kept as written (see :func:`normalize_label`), but :func:`mask_pii` needs a
    normalised text: a number typed in full-width digits (网格员李四１３９８７６５４３２１, as a
    Chinese keyboard in full-width mode writes it) or split by two spaces or a newline is not
    masked in the label as written. A label whose normalised form holds a number that masking
    replaces is quoted as :func:`clean` writes it (网格员李四[手机号]); any other keeps its exact
    spelling, so that a department's name in a message matches its name in the data.
    """
    normalised = normalize(label)
    masked = mask_pii(normalised)
    return masked if masked != normalised else label


def learnt_label(label: str) -> str:
    """A department or category as training learns it from a history's cell: trimmed, without
    invisible format characters (:func:`normalize_label`) and with a number in it masked
    (:func:`mask_label`); ``"\ufeff网格员１３８１２３４５６７８ "`` gives ``"网格员[手机号]"``.

    Every file that names a learnt label (dispatch rules, remits, a ``--mapping``) reads it so,
    or a rule naming 网格员13812345678 would not name the label the model learnt.
    """
    return mask_label(normalize_label(label))


# A cell of an input file, or a name that masking changed (a header row that is really the first
# ticket), is cut to this many characters (after masking) where a message quotes it.
MAX_QUOTED_CHARS = 40
# A name with nothing to mask is quoted whole up to this many characters: a form export's column
# names its question (45 characters and more), and the message must name it as it is written to be
# mapped with --text-col; the cap only bounds a headerless file's long first ticket.
MAX_NAME_CHARS = 300


def quoted(value: object, *, cell: bool = False) -> str:
    """A fragment of the staff's own input file as a message quotes it: a column's name, a JSON
    key or a sheet's name, or (``cell=True``) a cell.

    Such a fragment may hold a citizen's number (a header row that is really the first ticket, a
    key an export named by the caller's phone number): it is masked as a label is
    (:func:`mask_label`) and put in quotes as ``repr`` writes them. A name with nothing to mask
    keeps its exact spelling, whole up to ``MAX_NAME_CHARS`` characters, so the message still
    names the column to map and two names that differ only at their end read apart. A name that
    masking changed, and any cell (a citizen's text), is cut to ``MAX_QUOTED_CHARS`` characters
    (``'…'``, as the API quotes a key: :func:`serve.errors.quoted`): the file, the row or the line
    is what finds it.
    """
    text = str(value)
    shown = mask_label(text)
    limit = MAX_QUOTED_CHARS if cell or shown != text else MAX_NAME_CHARS
    return repr(shown if len(shown) <= limit else shown[:limit] + "…")


def counted(n: int, one: str, many: str | None = None, *, thousands: bool = False) -> str:
    """``n`` and the noun that counts it, as a message says it: "1 ticket", "2 tickets".

    ``many`` is the plural where adding "s" is wrong ("joint dispatches"), or the plural with its
    verb where the verb follows: ``counted(n, "record reaches", "records reach")``. ``thousands``
    writes the number as ``f"{n:,}"`` does. "1 tickets", "1 feedback records" read as slips in a
    nightly log or an evaluation summary.
    """
    number = f"{n:,}" if thousands else str(n)
    return f"{number} {one if n == 1 else (many if many is not None else one + 's')}"


# Pydantic's errors for a number out of its bounds, in its English ("Input should be greater than
# or equal to 1"), and how paidan says the bound: the key of the error's context holding it, and
# the words before it.
_BOUND_ERRORS = {
    "greater_than_equal": ("ge", "at least"),
    "less_than_equal": ("le", "at most"),
    "greater_than": ("gt", "more than"),
    "less_than": ("lt", "less than"),
}
# Pydantic's errors for a value that is no number of the kind asked (a setting's text that does
# not parse, an infinite number), and what paidan says it must be.
_VALUE_ERRORS = {
    "finite_number": "a finite number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
}


def value_problem(error: Mapping[str, Any]) -> str | None:
    """What a value must be, in paidan's words, for one pydantic error about it: "must be at least
    1", "must be at most 20", "must be a finite number"; None for another error (its caller keeps
    its own words).

    One wording for the API's errors (:func:`serve.errors.first_validation_error`: ``body.top_k:
    must be at least 1``) and the settings' (:func:`model.settings.load_settings`:
    ``PAIDAN_TOP_K: is 0; must be at least 1``), never quoting the value.
    """
    kind = error.get("type")
    ctx = error.get("ctx") or {}
    if kind in _BOUND_ERRORS and _BOUND_ERRORS[kind][0] in ctx:
        key, words = _BOUND_ERRORS[kind]
        bound = ctx[key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # a float setting's ge=0 is said "at least 0", not "0.0"
        return (
            f"must be {words} {bound:,}" if isinstance(bound, int) else f"must be {words} {bound}"
        )
    if kind in _VALUE_ERRORS:
        return f"must be {_VALUE_ERRORS[kind]}"
    return None


def combine(
    title: str | None, text: str | None, title_repeat: int = 2, script: Script = "as_written"
) -> str:
    """Join a cleaned title and text so that the title's words count ``title_repeat`` times.

    Parameters
    ----------
    title, text : str or None
        Raw title and body; both are cleaned here.
    title_repeat : int, default 2
        How many times the title is written before the body. Titles are the dispatcher's or the
        citizen's own summary and carry more signal per character than the body.
    script : {"as_written", "simplified"}, default "as_written"
        The script the model reads (see :func:`to_script`).

    Returns
    -------
    str
        ``"title。title。text"``, or just the text when the title is empty.
    """
    return join_cleaned(clean(title, script), clean(text, script), title_repeat)


def join_cleaned(title_c: str, text_c: str, title_repeat: int = 2) -> str:
    """:func:`combine` of a title and text already cleaned: for a caller that cleaned them itself
    (``paidan drift``, which also takes the placeholders out) and would otherwise clean twice."""
    if not title_c or title_repeat <= 0:
        return text_c
    return "。".join([title_c] * title_repeat + ([text_c] if text_c else []))
