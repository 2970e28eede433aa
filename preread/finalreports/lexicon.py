"""The words the extractor knows, as regular expressions (English and Simplified Chinese).

Everything here is matched against the report text after :func:`normalize` (NFKC: full-width
digits and punctuation become ASCII; lower case). English words are bounded by letters only
(``(?<![a-z])``, not ``\\b``), so that "见一GGO" or "右肺上叶GGN" in a mixed report still match.
The groups, and what :mod:`preread.finalreports.extractor` does with each:

* :data:`TERMS` — words that name a lung nodule (nodule, GGN/GGO, ground-glass opacity, mass,
  lesion, granuloma; 结节, 磨玻璃…影, 肿块, 团块, 占位, 病变/病灶, 钙化灶). A *lesion* is a lung
  nodule only where a lung word names its site; the others are unless another organ does.
* :data:`LUNG_SITES` / :data:`OTHER_SITES` — where a term is: lung words (lobes, 肺, pulmonary,
  subpleural…) and other organs (thyroid/甲状腺, liver/肝, adrenal, breast/乳腺, …).
* :data:`OTHER_ANCHORS` — things whose sizes must not be taken for a nodule's (lymph nodes,
  cysts, effusions, a part-solid nodule's solid component, the aorta…).
* :data:`PATTERNS` — words that make "nodules" a diffuse pattern, not a focal nodule
  (tree-in-bud, centrilobular, miliary, 粟粒, 树芽, patchy/斑片…).
* negation: :data:`NEGATION_BEFORE` (no, without, negative for, 未见, 无, 排除…) and
  :data:`NEGATION_AFTER` (no longer seen, has resolved, 已吸收, 消失, 术后…).
* sizes: :data:`NUMBER` with a unit (mm, cm, 毫米, 厘米), joined by :data:`CROSS` (8 x 6 mm) or
  :data:`RANGE` (6-7 mm); :data:`PRIOR_BEFORE` (previously, 原约…), :data:`BOUND_BEFORE` (< 4 mm),
  :data:`NOT_A_SIZE_*` (slice thickness).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize"]

A = r"(?<![a-z])"  # an English word starts here
Z = r"(?![a-z])"  # and ends here


def normalize(text: str) -> str:
    """NFKC (full-width forms to ASCII, ㎜ to mm) and lower case; the text the patterns see."""
    return unicodedata.normalize("NFKC", text).lower()


def _words(*alternatives: str) -> str:
    return "|".join(alternatives)


# --- terms: (kind, pattern) ----------------------------------------------------------------
TERMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (
            "nodule",
            rf"{A}(?:micro-?)?nod(?:ule|lue|ual|uel|ulle|lule)s?{Z}"
            rf"|{A}nodular (?:opacit(?:y|ies)|densit(?:y|ies)|lesions?){Z}|{A}spn{Z}",
        ),
        ("nodule", rf"{A}(?:[pm]-?)?gg[no]s?{Z}"),
        (
            "nodule",
            rf"{A}ground[- ]?glass(?: density)? "
            rf"(?:nodules?|opacit(?:y|ies)|lesions?|densit(?:y|ies)){Z}",
        ),
        ("mass", rf"{A}mass(?:es)?{Z}(?!\s*(?:effect|-like))"),
        ("lesion", rf"{A}(?:lesions?|metastas[ie]s|mets|tumou?rs?|neoplasms?|carcinomas?){Z}"),
        ("nodule", rf"{A}granulomas?{Z}"),
        ("nodule", r"(?:微小|小)?结节(?:影|灶)?|磨玻璃(?:密度)?(?:结节|影|灶)|钙化灶"),
        ("mass", r"肿块(?:影)?|团块(?:影)?|占位(?:性病变)?"),
        (
            "lesion",
            r"病变|病灶|转移瘤|转移灶|肿瘤|癌灶?|软组织(?:密度)?影|(?:类圆形|圆形|团状|不规则|分叶状)[^,，。]{0,6}密度影",
        ),
    )
)
PLURAL_TERM = re.compile(
    r"(?:nodules|nodlues|nodulles|noduels|masses|lesions|gg[no]s|granulomas|opacities|densities"
    r"|metastases|mets|tumou?rs|neoplasms|carcinomas)$"
)
COUNT_BEFORE = re.compile(
    rf"(?:{A}(?P<n>two|three|four|five|2|3|4|5)(?![\d.])(?!\s*(?:mm|cm))"
    rf"|{A}(?P<many>several|multiple|few|numerous|innumerable|scattered|bilateral){Z}"
    r"|(?P<zh>多发|多个|数个|散在|若干|多枚|数枚|几个|两个|两枚|2个|3个|二个|三个|多处))"
    r"[^,;:，]{0,30}$"
)
ZH_COUNT = {"两个": 2, "两枚": 2, "2个": 2, "二个": 2, "3个": 3, "三个": 3}
EN_COUNT = {"two": 2, "three": 3, "four": 4, "five": 5, "2": 2, "3": 3, "4": 4, "5": 5}

# --- sites ---------------------------------------------------------------------------------
LUNG_SITES = re.compile(
    rf"{A}(?:lungs?|pulmonary|intrapulmonary|(?:upper|middle|lower) lobes?|r[ulm]l|l[ul]l"
    rf"|lingula(?:r)?|hil(?:um|ar)|fissures?|perifissural|subpleural|pleural[- ]based"
    rf"|parenchyma(?:l)?|apicoposterior|(?:anterior|posterior|apical|superior|lateral|medial"
    rf"|basal|basilar) segments?|r lung|l lung){Z}"
    r"|肺|舌段|[上中下]叶|胸膜下|叶间裂|(?:尖后|尖|后|前|背|基底|内侧|外侧|内|外)段"
)
OTHER_SITES = re.compile(
    rf"{A}(?:thyroid|liver|hepatic|kidneys?|renal|adrenal|breasts?|spleen|splenic"
    rf"|pancrea\w*|bones?|osseous|vertebra\w*|axilla\w*|mediastin\w*|subcarinal|pericardi\w*"
    rf"|esophag\w*|gallbladder|uterus|prostate|colon|stomach|chest wall|subcutaneous|abdomen"
    rf"|pelvis|skin){Z}"
    r"|甲状腺|肝|肾|乳腺|乳房|[左右双]乳|脾|胰|椎体|骨质|肋骨|腋窝|纵隔|心包|锁骨上|胆囊|食管"
    r"|胸壁|皮下"
)
OTHER_ANCHORS = re.compile(
    rf"{A}(?:cysts?|lymph nodes?|nodes|(?:lymph)?adenopathy|effusions?|calculus|calculi|stones?"
    rf"|lipoma|hernia|hemangioma|adenoma|aort(?:a|ic)|solid (?:component|portion|part)"
    rf"|solid(?=\s*\d)|vessels?){Z}"
    r"|囊肿|囊性灶|囊性|淋巴结|积液|结石|实性成分|实性部分|主动脉|深度"
)
PREPOSITION_BEFORE = re.compile(rf"{A}(?:in|of|within|at|involving|along|from){Z}|位于")
PATTERNS = re.compile(
    rf"{A}(?:tree[- ]in[- ]bud|centrilobular|miliary|perilymphatic|patchy|diffuse){Z}"
    r"|小叶中心|粟粒|树芽|弥漫|斑片|片状"
)

# --- lobes and sides ---------------------------------------------------------------------------
LOBES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (lobe, re.compile(pattern))
    for lobe, pattern in (
        ("RUL", rf"{A}(?:right upper lobe|rul){Z}|右肺上叶|右上肺|右上叶"),
        ("RML", rf"{A}(?:right middle lobe|rml){Z}|右肺中叶|右中肺|右中叶"),
        ("RLL", rf"{A}(?:right lower lobe|rll){Z}|右肺下叶|右下肺|右下叶"),
        ("LUL", rf"{A}(?:left upper lobe|lul|lingula(?:r)?){Z}|左肺上叶|左上肺|左上叶|舌段"),
        ("LLL", rf"{A}(?:left lower lobe|lll){Z}|左肺下叶|左下肺|左下叶"),
    )
)
SIDES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("right", re.compile(rf"{A}(?:right lung|r lung){Z}|右肺")),
    ("left", re.compile(rf"{A}(?:left lung|l lung){Z}|左肺")),
)

# --- attenuation -----------------------------------------------------------------------------
PART_SOLID = re.compile(
    rf"{A}(?:part[- ]?solid|partly solid|partially solid|mixed (?:ground[- ]?glass|gg[no]"
    rf"|density|attenuation)|m-?gg[no]){Z}|部分实性|混杂密度|混合(?:性)?(?:磨玻璃|密度)"
)
GROUND_GLASS = re.compile(rf"{A}(?:ground[- ]?glass|p?-?gg[no]s?|non-?solid){Z}|磨玻璃")
SOLID = re.compile(
    rf"(?<!part )(?<!part-)(?<!partly )(?<!non-)(?<!non){A}solid{Z}"
    rf"(?!\s*(?:component|portion|part|\d))|(?<![部亚非])实性(?!成分|部分)"
)
CALCIFIED = re.compile(rf"(?<!non)(?<!non-){A}calcif\w*|(?<!非)钙化")
TINY = re.compile(rf"{A}(?:tiny|micro-?nod\w*|punctate|micronodul\w*){Z}|微小|微结节")
SUBCENTIMETER = re.compile(rf"{A}sub-?centimet(?:er|re){Z}|亚厘米")

# --- negation ----------------------------------------------------------------------------------
NEGATION_BEFORE = re.compile(
    rf"{A}no{Z}(?!\s+(?:significant\s+|interval\s+|appreciable\s+|substantial\s+|definite\s+)?"
    rf"(?:change|growth|increase|enlargement|difference|further|follow))"
    rf"|{A}(?:without|negative for|free of|clear of|absence of|exclude[ds]?|rule out|r/o"
    rf"|resolution of|no longer){Z}"
    r"|未见|未发现|未显示|未再见|没有|除外|排除|无(?!明显变化|变化|著变|明显增大|增大|明显改变|强化|法)"
)
NEGATION_AFTER = re.compile(
    rf"{A}(?:no longer (?:seen|visualized|visible|identified|present|evident|apparent"
    rf"|demonstrated)|not (?:seen|visualized|visible|identified|appreciated|demonstrated)"
    rf"(?!\s+(?:on|in)\s+(?:the\s+)?(?:prior|previous|earlier|\d))|(?:has |have )?resolved"
    rf"|disappeared|corresponds? to a vessel|none){Z}"
)
NEGATION_AFTER_ZH = re.compile(
    r"^[^,;，。]{0,20}?(?:已?吸收|消失|已?不明显|未再?显示|(?:本次|此次)(?:检查)?未见(?:显示)?(?=[,;，。]|$)"
    r"|未再见|已?(?:手术)?切除|术后)"
)
CONTRAST = re.compile(
    rf"{A}(?:but|however|except|other than|apart from|besides|although|though|while"
    rf"|aside from){Z}|但|除.{{0,6}}外"
)
COORDINATION_EN = re.compile(rf"^(?:\s|,|/|{A}(?:and|or|nor|and/or){Z})+(?:[a-z-]+\s+){{0,3}}$")
SEPARATES = re.compile(rf"[,，;:]|{A}(?:with|and|or){Z}|伴|并|及|和")
COORDINATION_ZH = re.compile(r"^[\s、及和或与]+$")

# --- sizes -------------------------------------------------------------------------------------
UNITS = r"mm|cm|millimet(?:er|re)s?|centimet(?:er|re)s?|毫米|厘米|公分"
NUMBER = re.compile(rf"(?<![a-wyz0-9.])(\d+(?:\.\d+)?)(?:\s*-?\s*({UNITS})(?![a-wyz0-9²³]))?")
CROSS = re.compile(rf"^\s*(?:x|×|\*|{A}by{Z})\s*$")
RANGE = re.compile(rf"^\s*(?:-|–|—|~|{A}to{Z}|至|到)\s*$")
PRIOR_BEFORE = re.compile(
    rf"(?:{A}(?:previously|prior|formerly|from|before){Z}|原|前片|旧片|上次|前次)"
    r"[^,;，。\d]{0,8}$"
)
BOUND_BEFORE = re.compile(
    rf"(?P<most><|≤|<=|{A}(?:less than|under|below|smaller than){Z}|小于|不足)\s*$"
    rf"|(?P<least>>|≥|>=|{A}(?:greater than|larger than|more than|over|at least){Z}|大于|超过)\s*$"
)
NOT_A_SIZE_BEFORE = re.compile(
    rf"(?:{A}(?:thickness|collimation|slices?|sections?|intervals?){Z}|层厚|层距|间隔)"
    r"[^,;，。\d]{0,6}$"
)
NOT_A_SIZE_AFTER = re.compile(
    rf"^\s*(?:{A}(?:thick|thickness|slices?|sections?|collimation|reconstructions?"
    rf"|axial images|images|depth){Z}|层厚)"
)

# --- sentences and headers ------------------------------------------------------------------------
SENTENCE_END = re.compile(r"[。;；!?\n]+|(?<!\d)\.(?!\d)(?=\s|$)|(?<=\d)\.(?=\s|$)")
ABBREVIATION = re.compile(rf"{A}(?:approx|e\.g|i\.e|vs|im|se|img|ser|fig|no|dr|st|ca){Z}$")
HEADER = re.compile(r"^\s*(?:\d+[.)、]\s*)?(?:【[^】]{1,12}】)?([^:：\d][^:：]{0,28}?)\s*[:：]")
