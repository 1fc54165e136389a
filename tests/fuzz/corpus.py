"""The fuzz corpus: the files in ``corpus/`` plus the big cases, made here on load
(deep nesting, 1 MB payloads, a plan of 10,000 requests) so the repository stays small.

``cases(run_id, generator_id)`` yields (name, bytes) with the placeholders filled in.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"


def big_cases(target: str) -> dict[str, bytes]:
    plan = {"name": "ten-thousand", "target": target, "rate": 10, "duration": "2s",
            "generators": 50,  # never startable here: the run must not disturb the test
            "requests": [{"name": f"r{i}", "path": f"/p/{i}"} for i in range(10_000)]}
    return {
        "deep-nesting-arrays": b"[" * 100_000 + b"]" * 100_000,
        "deep-nesting-objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "one-mb-string": b'{"run_id": "' + b"a" * 1_000_000 + b'"}',
        "one-mb-garbage": random.Random(7).randbytes(1_000_000),
        "one-mb-plan-name": json.dumps({"name": "x" * 1_000_000, "target": target, "rate": 1,
                                        "duration": "1s", "requests": [{"name": "a"}]}).encode(),
        "ten-thousand-request-plan": json.dumps(plan).encode(),
    }


def cases(run_id: str, generator_id: str, target: str) -> Iterator[tuple[str, bytes]]:
    for path in sorted(CORPUS.iterdir()):
        data = path.read_bytes()
        yield path.name, data.replace(b"@RUN@", run_id.encode()).replace(b"@GEN@", generator_id.encode())
    yield from big_cases(target).items()


def mutations(seed_cases: list[bytes], rounds: int, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """Byte-level mutations of valid messages: flips, truncations, splices."""
    rng = random.Random(seed)
    for i in range(rounds):
        data = bytearray(rng.choice(seed_cases))
        kind = rng.choice(("flip", "truncate", "splice", "insert"))
        if kind == "flip" and data:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "truncate" and data:
            data = data[: rng.randrange(len(data))]
        elif kind == "splice":
            other = rng.choice(seed_cases)
            cut = rng.randrange(len(data) + 1)
            data = data[:cut] + other[rng.randrange(len(other) + 1):]
        else:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.choice([b"{", b"}", b"[", b'"', b"\\", b"\xff", b"1e999", b"-1", b"null"])
        yield f"mutation-{i}-{kind}", bytes(data)
