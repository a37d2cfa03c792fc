import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { escapeHtml, html, raw } from "./html.js";

describe("html``", () => {
  it("escapes & < > \" ' and the backtick in interpolated text", () => {
    assert.equal(html`<p>${`a & b < c > d " e ' f \` g`}</p>`.toString(), "<p>a &amp; b &lt; c &gt; d &quot; e &#39; f &#96; g</p>");
  });

  it("leaves the template's own markup alone", () => {
    assert.equal(html`<a href="/x" class='y'>&amp;</a>`.toString(), `<a href="/x" class='y'>&amp;</a>`);
  });

  it("turns a script tag in text into inert text", () => {
    const out = html`<td>${"<script>alert(1)</script>"}</td>`.toString();
    assert.equal(out, "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>");
    assert.ok(!out.includes("<script"));
  });

  const attributeAttacks = [
    `" onmouseover="alert(1)`,
    `' onmouseover='alert(1)`,
    `\` onmouseover=alert(1)`,
    `"><img src=x onerror=alert(1)>`,
    `"/><script>alert(1)</script>`,
    `x" autofocus onfocus="alert(1)" y="`,
  ];
  for (const attack of attributeAttacks) {
    it(`cannot break out of a quoted attribute with ${JSON.stringify(attack)}`, () => {
      const double = html`<input value="${attack}">`.toString();
      const single = html`<input value='${attack}'>`.toString();
      for (const out of [double, single]) {
        const inside = out.slice(out.indexOf("value=") + 7, -2);
        assert.doesNotMatch(inside, /["'`<>]/, out);
      }
      // The only quotes left are the template's two.
      assert.equal(double.split('"').length - 1, 2, double);
      assert.equal(single.split("'").length - 1, 2, single);
    });
  }

  it("does not escape markup made by html`` itself, so templates compose", () => {
    const name = "<b>";
    const inner = html`<em>${name}</em>`;
    assert.equal(html`<p>${inner}</p>`.toString(), "<p><em>&lt;b&gt;</em></p>");
  });

  it("escapes each item of an array and joins them with nothing", () => {
    const items = ["<a>", "b&c"].map((x) => html`<li>${x}</li>`);
    assert.equal(html`<ul>${items}</ul>`.toString(), "<ul><li>&lt;a&gt;</li><li>b&amp;c</li></ul>");
    assert.equal(html`${["<", html`<br>`, [">", 1]]}`.toString(), "&lt;<br>&gt;1");
  });

  it("renders null, undefined and false as nothing, and numbers and true as text", () => {
    assert.equal(html`[${null}${undefined}${false}]`.toString(), "[]");
    assert.equal(html`[${0}${42}${true}${10n}]`.toString(), "[042true10]");
  });

  it("escapes an object that only looks like safe markup", () => {
    const forged = JSON.parse('{"html": "<script>alert(1)</script>"}') as never;
    const out = html`<p>${forged}</p>`;
    assert.ok(!String(out).includes("<script"));
  });

  it("escapes whatever an object's own toString returns", () => {
    const lookalike = { toString: () => "<script>alert(1)</script>" } as never;
    assert.equal(html`${lookalike}`.toString(), "&lt;script&gt;alert(1)&lt;/script&gt;");
  });

  it("raw() passes a trusted constant through untouched", () => {
    assert.equal(html`${raw("<!doctype html>")}<p>${"<"}</p>`.toString(), "<!doctype html><p>&lt;</p>");
  });

  it("escapeHtml escapes an ampersand only once per occurrence", () => {
    assert.equal(escapeHtml("&amp;"), "&amp;amp;");
  });
});
