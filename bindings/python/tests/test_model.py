"""A hypothesis state machine: random ingest / flush / reopen / query steps against the
store and against a plain-Python model of what it must hold."""

import gc
import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import scrydb
from conftest import spans_table


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="scrydb-model-")
        self.db = scrydb.open(self.dir, durability="nosync", memtable_size=1 << 20)
        self.next_span = 0
        # name -> spans with that name.
        self.model = {}

    @rule(n=st.integers(min_value=1, max_value=300), names=st.integers(min_value=1, max_value=4))
    def ingest(self, n, names):
        start = self.next_span
        self.db.ingest("spans", spans_table(n, start=start, name_of=lambda i: f"op{i % names}"))
        for i in range(start, start + n):
            key = f"op{i % names}"
            self.model[key] = self.model.get(key, 0) + 1
        self.next_span += n

    @rule()
    def flush(self):
        self.db.flush()

    @rule(clean=st.booleans())
    def reopen(self, clean):
        if clean:
            self.db.close()
        else:
            # Leave it to recovery: drop the handle without closing (the log has it all).
            self.db = None
            gc.collect()
        self.db = scrydb.open(self.dir, durability="nosync", memtable_size=1 << 20)

    @rule(name=st.sampled_from(["op0", "op1", "op2", "op3", "nope"]))
    def lookup_by_name(self, name):
        t = self.db.sql(f"SELECT count(*) AS n FROM spans WHERE name = '{name}'")
        assert t.column("n")[0].as_py() == self.model.get(name, 0)

    @invariant()
    def totals_match(self):
        t = self.db.sql("SELECT name, count(*) AS n FROM spans GROUP BY name")
        assert dict(zip(t.column("name").to_pylist(), t.column("n").to_pylist())) == self.model

    def teardown(self):
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=15, stateful_step_count=12, deadline=None)
TestStore = StoreMachine.TestCase
