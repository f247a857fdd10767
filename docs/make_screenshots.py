"""Screenshots (PNG) of a `crosearch report --html` page, for the docs.

    python docs/make_screenshots.py runs/report-demo/index.html --out docs/img \
        --run-a rag-crosslingual --run-b rag-mono --lang de

Needs playwright (the `test` extra) and Debian's chromium (or --chromium PATH).
Writes report-summary.png (tables and plots) and report-browser.png (two runs side
by side on the first question of the filtered list, its evidence opened).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="index.html written by `crosearch report --html DIR`")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--run-a", help="label of run A in the browser")
    parser.add_argument("--run-b", help="label of run B in the browser")
    parser.add_argument("--lang", help="language filter")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    url = args.page.resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
            page.goto(url)
            page.locator("#summary").screenshot(path=str(args.out / "report-summary.png"))
            if args.run_a:
                page.select_option("#run-a", label=args.run_a)
            if args.run_b:
                page.select_option("#run-b", label=args.run_b)
            if args.lang:
                page.select_option("#lang", args.lang)
            first = page.locator("article.question").first
            for details in first.locator("details.passage").all():
                details.evaluate("el => el.open = true")
            page.locator("#browser").evaluate("el => el.scrollIntoView()")
            page.screenshot(path=str(args.out / "report-browser.png"))
        finally:
            browser.close()
    print(f"wrote {args.out / 'report-summary.png'} and {args.out / 'report-browser.png'}")


if __name__ == "__main__":
    main()
