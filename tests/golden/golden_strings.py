"""The inputs of tokenization.json: a fixed, seeded list of byte strings.

tokenization_inputs() returns [(kind, bytes)], the same list on every run and
every machine (only `random.Random(seed)` and literals are used).
"""
import random

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one "
         "had by word but not what all were we when your can said there use an each which she do how their "
         "if will up other about out many then them these so some her would make like him into time has look "
         "two more write go see number no way could people my than first water been call who oil its now find "
         "long down day did get come made may part tokenizer llama gemma unbelievable internationalization "
         "Straße naïve café résumé façade jalapeño Zürich São Paulo Ελληνικά Москва Київ").split()

CODE = [
    "def add(a, b):\n    return a + b\n",
    "import numpy as np\n\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)\n",
    "class Foo:\n    def __init__(self):\n        self.x = 1  # comment\n\n    def __repr__(self):\n        return f\"Foo({self.x!r})\"\n",
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }",
    "function greet(name) {\n  return `Hello, ${name}!`;\n}\nconsole.log(greet('world'));",
    "const xs = [1, 2, 3].map(x => x * 2).filter(x => x > 2);",
    "fn main() {\n    let v: Vec<i32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
    "SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.id HAVING n > 5;",
    "<!DOCTYPE html>\n<html>\n<body>\n<div class=\"x\"><span>hi</span></div>\n</body>\n</html>",
    "{\"name\": \"pygemma\", \"version\": \"0.1.0\", \"deps\": [\"cffi\", \"numpy\"], \"ok\": true, \"n\": null}",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do\n  echo \"$f\" | tr a-z A-Z\ndone\n",
    "\\begin{equation}\n  E = mc^2 \\quad \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}",
    "public static void main(String[] args) { System.out.println(\"Hello\"); }",
    "SELECT * FROM t WHERE a <> b AND c >= 10 -- comment\n",
    "x = [i**2 for i in range(10) if i % 2 == 0]\n\tlambda y: y  # tab-indented\n",
    "if (a && b || !c) { x += y << 2; } else { x -= ~y >> 1; }",
    "    def f(self):\n        pass\n\n\n\n    def g(self):\n        return None\n",
    "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n-foo\n+bar\n",
    "key: value\nlist:\n  - a\n  - b\nnested:\n    deep: [1, 2]\n",
    "<?php echo htmlspecialchars($x, ENT_QUOTES); ?>",
    "(defun fact (n) (if (<= n 1) 1 (* n (fact (- n 1)))))",
    "main :: IO ()\nmain = mapM_ print [x | x <- [1..10], even x]",
]

PROSE = [
    "Hello world",
    "Hello, world!",
    " Hello world",
    "Hello world ",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "I can't believe it's not butter! Isn't it? We'll see; they'd know.",
    "Dr. Smith (born 1950) moved to the U.S.A. in 1975 -- or was it 1976?",
    "e.g., i.e., etc., vs. -- and... what?!",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist Verpflichtung aller staatlichen Gewalt.",
    "¿Dónde está la biblioteca? ¡Muy bien!",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
    "Tiếng Việt có dấu: Trăm năm trong cõi người ta.",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Pijamalı hasta yağız şoföre çabucak güvendi.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Árvíztűrő tükörfúrógép",
    "Høj bly gom vandt fræk sexquiz på wc.",
    "我能吞下玻璃而不伤身体。",
    "今日は良い天気ですね。カタカナとひらがな、漢字。",
    "키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.",
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "שלום עולם, מה שלומך?",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ሰላም ለዓለም",
    "Բարև աշխարհ",
    "გამარჯობა მსოფლიო",
    "வணக்கம் உலகம்",
    "ಹಲೋ ವರ್ಲ್ಡ್",
    "ສະບາຍດີ",
    "မင်္ဂလာပါ",
    "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "ᚠᛇᚻ᛫ᛒᛦᚦ᛫ᚠᚱᚩᚠᚢᚱ᛫ᚠᛁᚱᚪ᛫ᚷᛖᚻᚹᛦᛚᚳᚢᛗ",
    "Mixed: English, 日本語, العربية, עברית, हिन्दी, ไทย in one line.",
]

EMOJI = [
    "😀", "😀😃😄😁", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇫🇷🇯🇵🇺🇸", "1️⃣2️⃣#️⃣", "❤️", "❤",
    "I ❤️ NY", "🧑‍🤝‍🧑 🫶🏿 🫠", "🐍 + 🦀 = 🚀", "☕️☕", "👁‍🗨", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "✊🏾✋🏻", "🤷‍♀️🤷‍♂️",
]

COMBINING = [
    "e\u0301", "e\u0301\u0302\u0303", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
    "a\u0308o\u0308u\u0308", "\u00e4\u00f6\u00fc", "n\u0303", "\u1e9b\u0323", "\u0915\u094d\u0937", "\u0e01\u0e34\u0e4a",
    "\u0627\u064e\u0644\u0652", "\u05e9\u05c1\u05b8", "Å vs A\u030a", "\ufb01 \ufb02 ligatures", "ＦＵＬＬＷＩＤＴＨ １２３",
]

NUMBERS = [
    "0", "1", "12", "123", "1234", "12345", "123456789", "3.14159", "-42", "+7", "1e-10", "6.022e23",
    "1,000,000", "1.000.000,00", "0x1F3A", "0b1010", "007", "2024-06-07", "12:34:56", "99.9%",
    "$1,234.56", "€50", "¥1000", "½ ¼ ¾", "Ⅻ", "٣٤٥", "१२३", "１２３", "3/4", "10^9",
    "2^31 - 1 = 2147483647", "π ≈ 3.14", "∑_{i=1}^{n} i = n(n+1)/2",
]

PUNCT = [
    "!!!", "???", "...", "…", "---", "___", "***", "###", "~~~", "```", "'''", '"""', "<<<>>>", "((()))",
    "[[[]]]", "{{{}}}", "!?!?", ".,;:", "@#$%^&*", "-=+_|\\/", "«»‹›„“”‘’", "—–-", "·•◦‣", "§¶†‡",
    "→←↑↓⇒⇔", "★☆✓✗", "©®™", "°C °F", "a--b", "a---b", "a....b", "::", "::=", "->", "=>", "!=", "===",
]

URLS = [
    "https://www.example.com/path/to/page?query=1&other=two#frag",
    "http://localhost:8080/api/v1/users/42",
    "ftp://ftp.example.org/pub/file.tar.gz",
    "mailto:someone@example.com",
    "user.name+tag@sub.domain.co.uk",
    "www.google.com",
    "https://en.wikipedia.org/wiki/Tokenization_(lexical_analysis)",
    "file:///home/user/My%20Documents/report.pdf",
    "git@github.com:ggml-org/llama.cpp.git",
    "https://例え.jp/パス?q=値",
    "C:\\Program Files\\App\\app.exe",
    "/usr/local/lib/python3.11/site-packages/",
]

CONTROL_TEXT = [
    "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]", "<start_of_image>", "<end_of_image>",
    "<start_of_turn>", "<end_of_turn>", "<unused0>", "<unused1>", "<unused99>", "<unused6241>", "<unused6242>",
    "<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
    "<start_of_turn>system\nYou are helpful.<end_of_turn>",
    "text<eos>more<pad><pad>end",
    "<bos><bos>", "<eos><eos><eos>", "<start_of_turn><end_of_turn>", "<start_of_turn >", "< start_of_turn>",
    "<START_OF_TURN>", "<start_of_turn", "start_of_turn>", "<<start_of_turn>>", "<start_of_turn><start_of_turn>",
    "<foo>", "</foo>", "<foo bar=\"baz\">", "<>", "</>", "<", ">", "<br>", "<br/>", "<p>text</p>",
    "<s>", "</s>", "a</s>b", "<s>a</s>", "<|endoftext|>", "<|im_start|>", "[INST]", "<<SYS>>",
    "<table><tr><td>1</td><td>2</td></tr></table>",
    "<h1>Title</h1>\n<blockquote>quote</blockquote>",
    "<strong>bold</strong> <em>it</em> <b>b</b> <i>i</i> <u>u</u> <sub>x</sub> <sup>2</sup> <code>x</code>",
    "<a href=\"x\">link</a> <a>bare</a>", "<img> <img src=x> </img>", "<bbox>1,2,3,4</bbox>",
    "<ul>\n<li>one</li>\n<li>two</li>\n</ul>", "<iframe></iframe><footer></footer>",
    "<div><span>nested <code>code</code></span></div>",
    "<start_of_image><end_of_image>", "x<start_of_image>y", "<start_of_image>\n\n",
    "user\n<end_of_turn>\n\n\n", "<end_of_turn>  <start_of_turn>", "\t<bos>\t",
]


def whitespace_cases():
    out = []
    for ch in (" ", "\t", "\n"):
        for n in list(range(1, 36)) + [40, 47, 62, 63, 64, 65, 100]:
            out.append(ch * n)
    for n in (1, 2, 3, 4, 8, 31, 32, 33):
        out += [" " * n + "word", "word" + " " * n, "a" + " " * n + "b", "\n" * n + "x", "x" + "\n" * n,
                "\t" * n + "x", "x" + "\t" * n + "y"]
    out += ["\r\n", "\r\n\r\n", "\r", "a\rb", "\n \n", " \n ", "\t \t", " \t ", "\n\t\n\t", "  \n  \n",
            "\u00a0", "a\u00a0b", "\u2003em space", "\u3000ideographic", "\u200b", "a\u200bb", "\u2028\u2029",
            "\f\v", "\x0b\x0c", " \u2581 ", "\u2581", "\u2581\u2581", "a\u2581b", "▁hello", "trailing space ",
            "  leading and trailing  ", "\n\nparagraph\n\n", "line1\nline2\nline3", "tab\tseparated\tvalues",
            "    indented code", "\t\tdouble tab", "mixed \t\n \t\n whitespace", " ", "  ", "   "]
    return out


def single_characters():
    chars = [chr(c) for c in range(0, 128)]
    chars += [chr(c) for c in (0xa0, 0xa9, 0xb5, 0xbf, 0xc0, 0xdf, 0xe9, 0xff, 0x100, 0x17f, 0x391, 0x3b1,
                               0x410, 0x430, 0x5d0, 0x627, 0x905, 0xe01, 0x1100, 0x2013, 0x20ac, 0x2122, 0x2190,
                               0x2200, 0x25a0, 0x2603, 0x3042, 0x30a2, 0x4e00, 0x9fff, 0xac00, 0xd7a3, 0xe000,
                               0xf8ff, 0xfb01, 0xfeff, 0xfffd, 0x10000, 0x1f600, 0x1f9d1, 0x20000, 0x2a6d6,
                               0xe0001, 0xf0000, 0x10fffd)]
    return chars


BLOCKS = [  # (weight, low, high): codepoint ranges for random strings
    (30, 0x20, 0x7e), (6, 0xa0, 0x24f), (3, 0x370, 0x3ff), (4, 0x400, 0x4ff), (2, 0x590, 0x5ff),
    (3, 0x600, 0x6ff), (2, 0x900, 0x97f), (2, 0xe00, 0xe7f), (1, 0x1200, 0x137f), (1, 0x1e00, 0x1eff),
    (2, 0x2000, 0x206f), (2, 0x2190, 0x23ff), (2, 0x2500, 0x27bf), (2, 0x3040, 0x30ff), (6, 0x4e00, 0x9fff),
    (3, 0xac00, 0xd7a3), (2, 0xe000, 0xf8ff), (1, 0xff00, 0xffef), (1, 0x10000, 0x1013f),
    (1, 0x10300, 0x1034f), (1, 0x12000, 0x123ff), (1, 0x13000, 0x1342f), (4, 0x1f300, 0x1faff),
    (1, 0x20000, 0x2a6df), (1, 0xf0000, 0xffffd), (2, 0x300, 0x36f), (2, 0x9, 0xd),
]


def random_unicode(rng, n):
    total = sum(w for w, _, _ in BLOCKS)
    out = []
    for _ in range(n):
        r = rng.uniform(0, total)
        for w, lo, hi in BLOCKS:
            r -= w
            if r <= 0:
                break
        c = rng.randint(lo, hi)
        if 0xd800 <= c <= 0xdfff:
            c = 0xfffd
        out.append(chr(c))
    return "".join(out)


def random_sentence(rng):
    seps = [" ", " ", " ", " ", "  ", "\n", "\t", ", ", ". ", "\n\n", " - ", "   "]
    n = rng.randint(1, 14)
    words = []
    for _ in range(n):
        w = rng.choice(WORDS)
        r = rng.random()
        if r < 0.1:
            w = w.capitalize()
        elif r < 0.15:
            w = w.upper()
        elif r < 0.2:
            w = w + str(rng.randint(0, 9999))
        words.append(w + rng.choice(seps))
    s = "".join(words)
    if rng.random() < 0.3:
        s = s.strip()
    return s


def invalid_utf8(rng):
    fixed = [b"\xff", b"\xfe\xff", b"\x80", b"\xbf", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(", b"\xf0\x9f\x98",
             b"\xf0\x9f\x98(", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
             b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80", b"abc\xffdef", b"\xe2\x96", b"\xe2\x96 x",
             b"hello \xc3\xa9\xc3 world", b"\x00", b"a\x00b", b"\x00\x00\x00", b"<start_of_turn>\xff",
             b"\xff<end_of_turn>", b"\n\xff\n", b"  \x80  ", b"\xef\xbb\xbfBOM text", b"\xef\xbb\xbf"]
    rand = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))) for _ in range(40)]
    # valid text with a random byte inserted
    mixed = []
    for _ in range(20):
        s = random_sentence(rng).encode("utf-8")
        k = rng.randrange(len(s) + 1)
        mixed.append(s[:k] + bytes([rng.randrange(0x80, 0x100)]) + s[k:])
    return fixed + rand + mixed


def long_texts(rng):
    texts = []
    texts.append(("\n\n".join(PROSE) + "\n") * 2)
    texts.append("\n".join(CODE))
    texts.append(" ".join(random_sentence(rng) for _ in range(400)))
    texts.append("".join(random_unicode(rng, rng.randint(20, 60)) + rng.choice([" ", "\n", "  ", "\t"])
                         for _ in range(80)))
    texts.append(("<start_of_turn>user\n" + random_sentence(rng) + "<end_of_turn>\n<start_of_turn>model\n"
                  + random_sentence(rng) + "<end_of_turn>\n") * 30)
    texts.append("a" * 3000)
    texts.append(" " * 500 + "x" + "\n" * 500 + "y" + "\t" * 500)
    texts.append("😀" * 700)
    return texts


def vocab_like_pieces(rng):
    """Common English and code fragments, alone and with leading spaces."""
    frags = ["ing", "tion", "ly", "un", "re", "pre", "ment", "ness", "able", "self", "__init__", "self.",
             "return", "print(", "()", "[]", "{}", "::", "//", "/*", "*/", "#!", "0x", "<0x41>", "<0xFF>",
             "<0x0A>", "<0x", "0x41>", "\u2581\u2581\u2581", "▁the", "▁▁", "▁"]
    out = []
    for f in frags:
        out += [f, " " + f, f + " ", "x" + f + "y"]
    for _ in range(30):
        out.append("".join(rng.choice(frags) for _ in range(rng.randint(2, 6))))
    return out


def tokenization_inputs():
    rng = random.Random(1234)
    cases = [("empty", "")]
    cases += [("single_char", c) for c in single_characters()]
    cases += [("whitespace", s) for s in whitespace_cases()]
    cases += [("prose", s) for s in PROSE]
    cases += [("code", s) for s in CODE]
    cases += [("emoji", s) for s in EMOJI]
    cases += [("combining", s) for s in COMBINING]
    cases += [("numbers", s) for s in NUMBERS]
    cases += [("punctuation", s) for s in PUNCT]
    cases += [("url", s) for s in URLS]
    cases += [("control_text", s) for s in CONTROL_TEXT]
    cases += [("pieces", s) for s in vocab_like_pieces(rng)]
    # special token texts mixed into sentences at random places
    specials = [s for s in CONTROL_TEXT if len(s) < 20]
    for _ in range(60):
        a, b = random_sentence(rng), random_sentence(rng)
        cases.append(("control_mixed", a + rng.choice(specials) + b))
    cases += [("sentence", random_sentence(rng)) for _ in range(300)]
    cases += [("random_unicode", random_unicode(rng, rng.randint(1, 40))) for _ in range(350)]
    cases += [("emoji_mixed", random_sentence(rng) + rng.choice(EMOJI) + random_sentence(rng)) for _ in range(30)]
    cases += [("long", s) for s in long_texts(rng)]
    out = [(kind, s.encode("utf-8")) for kind, s in cases]
    out += [("invalid_utf8", b) for b in invalid_utf8(rng)]
    return out
