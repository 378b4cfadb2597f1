// A small, safe Markdown renderer for model replies.
//
// Safety rule: the model's text is HTML-escaped before anything else; every
// tag in the output is one this file writes, and the only attribute values
// taken from the text are link URLs whose scheme is http, https or mailto
// (already escaped, so they cannot close the attribute).  The result is an
// HTML string that is safe to assign to innerHTML.
//
// Supported: fenced code blocks (``` or ~~~, an unclosed fence runs to the end,
// which is what a reply looks like while it streams), ATX headings, bullet
// and numbered lists (nested by indentation), block quotes, horizontal rules,
// paragraphs; inline code, bold, italic, strikethrough, links and bare URLs.
(function (global) {
  "use strict";

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  // URLs arrive escaped; allow only schemes that cannot run script.
  const SAFE_URL = /^(https?:\/\/|mailto:)[^\s]*$/i;

  // Inline spans are formatted on escaped text.  Code spans and links are cut
  // out first (into \u0000N\u0000 placeholders) so nothing formats their insides.
  function renderInline(escaped) {
    const held = [];
    const hold = (html) => "\u0000" + (held.push(html) - 1) + "\u0000";
    let s = escaped;
    s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (m, ticks, code) => hold("<code>" + code.trim() + "</code>"));
    s = s.replace(/\[([^\]\n]+)\]\(([^)\s]+)\)/g, (m, label, url) =>
      SAFE_URL.test(url)
        ? hold('<a href="' + url + '" target="_blank" rel="noopener noreferrer">' + formatSpans(label) + "</a>")
        : m);
    // Bare URLs: escaped text, so "&" only appears as "&amp;"; trailing punctuation is not part of it.
    s = s.replace(/(^|[\s(])(https?:\/\/(?:[^\s&\u0000]|&amp;)+)/g, (m, lead, url) => {
      const tail = /[.,:;!?)]*$/.exec(url)[0];
      let cut = url.length - tail.length;
      if (url.slice(0, cut).endsWith("&amp")) cut++; // keep the ";" of an escaped "&"
      const href = url.slice(0, cut);
      return lead + hold('<a href="' + href + '" target="_blank" rel="noopener noreferrer">' + href + "</a>") + url.slice(cut);
    });
    s = formatSpans(s);
    // Placeholders may nest (a code span inside a link label): restore until none is left.
    while (/\u0000\d+\u0000/.test(s)) s = s.replace(/\u0000(\d+)\u0000/g, (m, i) => held[Number(i)]);
    return s;
  }

  function formatSpans(s) {
    return s
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
      .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>")
      .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
      .replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>");
  }

  const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
  const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
  const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const QUOTE = /^ {0,3}&gt;\s?(.*)$/;

  function render(markdown) {
    const lines = escapeHtml(String(markdown).replace(/\u0000/g, "").replace(/\r\n?/g, "\n")).split("\n");
    const out = [];
    let para = [];
    let lists = []; // open lists, innermost last: {tag, indent}

    const flushPara = () => {
      if (para.length) out.push("<p>" + para.map(renderInline).join("<br>") + "</p>");
      para = [];
    };
    const closeLists = (indent) => {
      while (lists.length && lists[lists.length - 1].indent >= indent) {
        out.push("</li></" + lists.pop().tag + ">");
      }
    };

    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      let m;
      if ((m = FENCE.exec(line))) {
        flushPara();
        closeLists(0);
        const fence = m[1];
        const lang = m[2] ? ' class="language-' + m[2].replace(/[^\w+-]/g, "") + '"' : "";
        const code = [];
        for (i++; i < lines.length; i++) {
          const close = lines[i].trim();
          if (close.startsWith(fence) && /^[`~]+$/.test(close)) break;
          code.push(lines[i]);
        }
        out.push("<pre><code" + lang + ">" + code.join("\n") + "</code></pre>");
        continue;
      }
      if (!line.trim()) {
        flushPara();
        // A blank line inside a list keeps it open unless the next line leaves it.
        const next = lines.slice(i + 1).find((l) => l.trim());
        if (!next || !ITEM.test(next)) closeLists(0);
        continue;
      }
      if ((m = ITEM.exec(line))) {
        flushPara();
        const indent = m[1].replace(/\t/g, "    ").length;
        const tag = /\d/.test(m[2]) ? "ol" : "ul";
        closeLists(indent + 1);
        const top = lists[lists.length - 1];
        if (top && top.indent === indent && top.tag === tag) {
          out.push("</li><li>");
        } else {
          if (top && top.indent === indent) out.push("</li></" + lists.pop().tag + ">");
          const start = tag === "ol" && parseInt(m[2], 10) !== 1 ? ' start="' + parseInt(m[2], 10) + '"' : "";
          out.push("<" + tag + start + "><li>");
          lists.push({ tag, indent });
        }
        out.push(renderInline(m[3]));
        continue;
      }
      if (lists.length && /^\s+\S/.test(line)) {
        out.push("<br>" + renderInline(line.trim())); // continuation of a list item
        continue;
      }
      closeLists(0);
      if ((m = HEADING.exec(line))) {
        flushPara();
        const level = m[1].length;
        out.push("<h" + level + ">" + renderInline(m[2]) + "</h" + level + ">");
      } else if (RULE.test(line)) {
        flushPara();
        out.push("<hr>");
      } else if ((m = QUOTE.exec(line))) {
        flushPara();
        const quoted = [m[1]];
        while (i + 1 < lines.length && (m = QUOTE.exec(lines[i + 1]))) {
          quoted.push(m[1]);
          i++;
        }
        out.push("<blockquote>" + quoted.map(renderInline).join("<br>") + "</blockquote>");
      } else {
        para.push(line.trim());
      }
    }
    flushPara();
    closeLists(0);
    return out.join("");
  }

  global.PgMarkdown = { render, escapeHtml };
})(window);
