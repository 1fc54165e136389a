"""A report as JUnit XML (``surge run --junit``): one test case per threshold, so CI
systems show what failed. Reads; never measures."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from schemas.stats import Report


def junit(r: Report) -> str:
    """JUnit XML: one test case per threshold, so CI systems show what failed."""
    cases = []
    for res in r.thresholds:
        name = quoteattr(res.label)
        if res.ok:
            cases.append(f"    <testcase classname={quoteattr(r.plan_name)} name={name}/>")
        else:
            if res.reason:
                why = f"{res.reason} (limit {res.limit})"
            elif res.value is None:
                why = f"no data to judge (limit {res.limit})"
            else:
                why = f"value {res.value} {'is below' if res.name == 'min_rps' else 'exceeds'} limit {res.limit}"
            msg = quoteattr(f"{res.label}: {why}")
            cases.append(
                f"    <testcase classname={quoteattr(r.plan_name)} name={name}>"
                f"<failure message={msg}/></testcase>"
            )
    if not cases:
        cases.append(f"    <testcase classname={quoteattr(r.plan_name)} name=\"run\"/>")
    failures = sum(1 for res in r.thresholds if not res.ok)
    if r.hosts is not None and r.hosts.note:  # CI shows it beside the cases: who set the rate
        cases.append(f"    <system-err>{escape(r.hosts.note)}</system-err>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<testsuites><testsuite name={quoteattr('surge ' + r.plan_name)} tests=\"{len(cases)}\" "
        f"failures=\"{failures}\" time=\"{r.duration_s:.3f}\">\n"
        + "\n".join(cases)
        + "\n</testsuite></testsuites>\n"
    )
