/**
 * The one way the pages build HTML: a tagged template that escapes every
 * interpolated value. Usernames, emails and user agents are chosen by whoever
 * signs up or sends the request, so they reach the page only through here.
 *
 * Escaping makes a value safe as element text and inside a quoted attribute
 * (always quote attributes). It does not make a value safe as a URL, a style
 * or an event handler: never interpolate user input into `href`, `src`,
 * `style` or `on*`.
 */

/**
 * Markup that is already safe: made by {@link html} or {@link raw}. The class
 * is not exported as a value, so nothing else can mint one, and its field is
 * private, so an object shaped like it (say, parsed from JSON) is not one.
 */
class SafeHtml {
  readonly #html: string;

  constructor(markup: string) {
    this.#html = markup;
  }

  toString(): string {
    return this.#html;
  }
}

export type { SafeHtml };

/** A value `html` can interpolate: text, numbers, nothing, markup, or lists of these. */
export type HtmlValue = SafeHtml | string | number | bigint | boolean | null | undefined | readonly HtmlValue[];

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
  // Old IE ended unquoted attributes at a backtick; escaping it costs nothing.
  "`": "&#96;",
};

/**
 * Escapes text for element content and quoted attributes.
 *
 * @example
 * escapeHtml(`"><script>`); // "&quot;&gt;&lt;script&gt;"
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

function render(value: HtmlValue): string {
  if (value instanceof SafeHtml) return value.toString();
  if (Array.isArray(value)) return value.map(render).join("");
  // null, undefined and false render as nothing so `${cond && html`…`}` reads naturally.
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(String(value));
}

/**
 * Builds markup from a template, escaping every interpolated value unless it
 * is itself markup from `html` (or `raw`). Arrays are rendered item by item
 * and joined; `null`, `undefined` and `false` render as nothing.
 *
 * @example
 * const row = (name: string) => html`<li title="${name}">${name}</li>`;
 * html`<ul>${names.map(row)}</ul>`.toString();
 */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i += 1) out += render(values[i]!) + strings[i + 1]!;
  return new SafeHtml(out);
}

/**
 * Marks a string as markup without escaping it. Only for constants written in
 * this codebase (never for anything that came from a request or a store).
 *
 * @example
 * raw("<!doctype html>");
 */
export function raw(markup: string): SafeHtml {
  return new SafeHtml(markup);
}
