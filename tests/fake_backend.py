"""A fake policy backend for the arithmetic world, registered like any backend: proof that a new backend is one
module plus `register_policy_backend`, and exact bookkeeping for the tests of sampling, labels and search.

Even samples are the reference solution; odd samples take a wrong first step and answer its (wrong) value.
A continuation from a prefix on the reference path finishes it correctly; from any other prefix it answers the
prefix's last value. With a stop string, only the next step is returned (the stop string included, as the
`policy` rule says). Records the prompts of every call.
"""
import pandas as pd

from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SAMPLE_COLUMNS
from ttc_utils.registry import register_policy_backend

BACKEND = "oracle"


class OraclePolicy:
    name, non_embedding_params = "oracle", 0
    problems: list = []
    calls: list = []

    def __init__(self, spec, batch_size=512, progress=True):
        self.spec = spec

    def sample(self, prompts, params, seed):
        OraclePolicy.calls.append(list(prompts))
        rows = []
        for i, p in enumerate(prompts):
            question = p.split("\n")[1]
            prob = next(q for q in OraclePolicy.problems if q.question == question)
            done = p.split("\n")[2:-1]
            for s in range(params.n):
                if not done:
                    wrong = (prob.answer + 1) % 10
                    text = prob.solution if s % 2 == 0 else f"{wrong}\nA:{wrong}\n"
                elif list(prob.steps[:len(done)]) == done:
                    text = "".join(x + "\n" for x in prob.steps[len(done):]) + f"A:{prob.answer}\n"
                else:
                    text = f"A:{done[-1]}\n"
                if params.stop and params.stop[0] in text:
                    text = text[:text.index(params.stop[0]) + len(params.stop[0])]
                rows.append((i, s, text, len(text), "stop", len(p)))
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)

    sample_shared = sample


def register(problems) -> ModelSpec:
    """Register the backend for `problems` and return a spec that loads it (a pinned 'hub id': no files)."""
    OraclePolicy.problems, OraclePolicy.calls = list(problems), []
    register_policy_backend(BACKEND, OraclePolicy)
    return ModelSpec("fake/oracle", backend=BACKEND, revision="0" * 40, param="policy_path")


class OracleVerifier:
    """A fake verifier adapter: a step scores 1 while the solution is still on the reference path, else 0."""
    name, non_embedding_params = "oracle-verifier", 0

    def __init__(self, spec, batch_size=512, progress=True):
        self.spec = spec

    def score(self, prompts, steps):
        from ttc_utils.world import step_labels
        out = []
        for p, s in zip(prompts, steps):
            prob = next(q for q in OraclePolicy.problems if q.question == p.split("\n")[1])
            truth = step_labels(prob, "".join(s)) + [True]  # the answer line itself is not judged here
            out.append([float(t) for t in truth[:len(s)]])
        return out, [len(p) + sum(map(len, s)) for p, s in zip(prompts, steps)]


def register_verifier() -> ModelSpec:
    from ttc_utils.registry import register_verifier as register_adapter
    register_adapter(BACKEND, OracleVerifier)
    return ModelSpec("fake/oracle-verifier", backend=BACKEND, revision="1" * 40, param="verifier_path")
