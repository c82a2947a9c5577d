"""Language codes: the plain ISO 639-1 code a user gives -> the token a multilingual MT model uses.

- M2M-100: `__fr__` (the tokenizer's own table, ISO 639-1 plus a few 639-3 codes such as `ast`).
- NLLB-200: `fra_Latn` (ISO 639-3 + script), from `NLLB_CODES` below.
- mBART-50 / mBART-25: `fr_XX` (ISO 639-1 + region), looked up in the tokenizer's vocabulary.
- Multilingual OPUS-MT (Marian): a `>>fra<<` token at the start of the source text.

A code already in the model's own form (`fra_Latn`, `zh_CN`) is accepted as is.
"""

from __future__ import annotations

import re

#: ISO 639-1 -> NLLB-200 (FLORES-200) code, for the XNLI 15 languages, PAWS-X's and other common
#: ones. Chinese is Simplified (pass `zho_Hant` for Traditional); Arabic is Modern Standard
#: Arabic (`arb_Arab`); Norwegian is Bokmål; Persian is Western Persian; Malay is Standard Malay.
NLLB_CODES: dict[str, str] = {
    # XNLI
    "en": "eng_Latn", "fr": "fra_Latn", "es": "spa_Latn", "de": "deu_Latn", "el": "ell_Grek",
    "bg": "bul_Cyrl", "ru": "rus_Cyrl", "tr": "tur_Latn", "ar": "arb_Arab", "vi": "vie_Latn",
    "th": "tha_Thai", "zh": "zho_Hans", "hi": "hin_Deva", "sw": "swh_Latn", "ur": "urd_Arab",
    # PAWS-X and other common languages
    "ja": "jpn_Jpan", "ko": "kor_Hang", "it": "ita_Latn", "pt": "por_Latn", "nl": "nld_Latn",
    "pl": "pol_Latn", "sv": "swe_Latn", "da": "dan_Latn", "fi": "fin_Latn", "no": "nob_Latn",
    "nb": "nob_Latn", "nn": "nno_Latn", "cs": "ces_Latn", "sk": "slk_Latn", "sl": "slv_Latn",
    "hu": "hun_Latn", "ro": "ron_Latn", "uk": "ukr_Cyrl", "be": "bel_Cyrl", "hr": "hrv_Latn",
    "sr": "srp_Cyrl", "bs": "bos_Latn", "mk": "mkd_Cyrl", "sq": "als_Latn", "et": "est_Latn",
    "lv": "lvs_Latn", "lt": "lit_Latn", "he": "heb_Hebr", "fa": "pes_Arab", "ps": "pbt_Arab",
    "id": "ind_Latn", "ms": "zsm_Latn", "tl": "tgl_Latn", "jv": "jav_Latn", "su": "sun_Latn",
    "bn": "ben_Beng", "ta": "tam_Taml", "te": "tel_Telu", "mr": "mar_Deva", "gu": "guj_Gujr",
    "kn": "kan_Knda", "ml": "mal_Mlym", "pa": "pan_Guru", "ne": "npi_Deva", "si": "sin_Sinh",
    "my": "mya_Mymr", "km": "khm_Khmr", "lo": "lao_Laoo", "ka": "kat_Geor", "hy": "hye_Armn",
    "az": "azj_Latn", "kk": "kaz_Cyrl", "ky": "kir_Cyrl", "uz": "uzn_Latn", "tg": "tgk_Cyrl",
    "mn": "khk_Cyrl", "ca": "cat_Latn", "eu": "eus_Latn", "gl": "glg_Latn", "cy": "cym_Latn",
    "ga": "gle_Latn", "is": "isl_Latn", "mt": "mlt_Latn", "lb": "ltz_Latn", "eo": "epo_Latn",
    "af": "afr_Latn", "am": "amh_Ethi", "ha": "hau_Latn", "ig": "ibo_Latn", "yo": "yor_Latn",
    "zu": "zul_Latn", "xh": "xho_Latn", "so": "som_Latn", "ln": "lin_Latn", "rw": "kin_Latn",
}

_MBART_CODE = re.compile(r"^([a-z]{2,3})_[A-Z]{2}$")
_NLLB_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


def iso3(code: str) -> str | None:
    """The ISO 639-3 code for an ISO 639-1 code in `NLLB_CODES` (e.g. fr -> fra)."""
    nllb = NLLB_CODES.get(code)
    return nllb.split("_")[0] if nllb else None


def nllb_code(code: str) -> str:
    """`fr` -> `fra_Latn`; a code already in NLLB form passes through."""
    return NLLB_CODES.get(code, code)


def mbart_code(code: str, known: list[str]) -> str | None:
    """`fr` -> `fr_XX` among the model's `known` mBART codes (exact codes pass through)."""
    if code in known:
        return code
    matches = [k for k in known if (m := _MBART_CODE.match(k)) and m.group(1) == code]
    return matches[0] if len(matches) == 1 else None


def marian_code(code: str, known: list[str]) -> str | None:
    """`fr` -> the `>>fra<<` (or `>>fr<<`, `>>fra_Latn<<`) token a multi-target OPUS-MT model knows."""
    for cand in (code, iso3(code), NLLB_CODES.get(code)):
        if cand and f">>{cand}<<" in known:
            return f">>{cand}<<"
    if code.startswith(">>") and code in known:
        return code
    return None


def is_nllb_code(token: str) -> bool:
    return bool(_NLLB_CODE.match(token))


def is_mbart_code(token: str) -> bool:
    return bool(_MBART_CODE.match(token))
