"""Row 16's CPython program: a fixed amount of work in Python functions (recursion,
json, hashing), timed by itself. Usage: python_work.py ROUNDS; prints
`elapsed_s=S cpu_s=S rounds=N`."""
import hashlib
import json
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def json_round(items):
    return len(json.loads(json.dumps(items)))


def sha_blob(blob):
    return hashlib.sha256(blob).digest()


def work(rounds):
    items = list(range(2000))
    blob = b"x" * 100_000
    for _ in range(rounds):
        fib(18)
        json_round(items)
        sha_blob(blob)


def main():
    rounds = int(sys.argv[1])
    start, cpu = time.perf_counter(), time.process_time()
    work(rounds)
    print(
        f"elapsed_s={time.perf_counter() - start:.6f} "
        f"cpu_s={time.process_time() - cpu:.6f} rounds={rounds}"
    )


main()
