"""The committee-machine study (paper §5, Fig. 1) from Python instead of the command line.

Shows: ``wideflat committee --quick`` as code: build the quick configuration (SGD fast against
rSGD fast and slow on a committee machine, N = 784 inputs, K = 9 hidden units), change any
field of it, run the study (training, the local entropy Φ_LE by Belief Propagation, the local
energy δE_train), print the summary table, draw Fig. 1, and read single numbers out of the
results dict (the same content as ``results.json``).

Run:
    python examples/committee_from_python.py          # Dress vs Coat if Fashion-MNIST is found
                                                      # (else teacher data), ~30 s
    python examples/committee_from_python.py --tiny   # 2 algorithms, 1 restart, 2 epochs (CI)
Rerunning continues a study cut short (resume=True); --jobs 2 trains on both cores.
"""

import argparse

from wideflat.data.fashion_mnist import locate_fashion_mnist
from wideflat.experiments import committee
from wideflat.experiments.committee.plots import plot_fig1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds (CI)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", default="committee-quick", help="output folder")
    args = parser.parse_args()

    if args.tiny:  # every field of CommitteeStudyConfig can be changed this way
        cfg = committee.quick_study_config(data="teacher", algorithms=("sgd-fast", "rsgd-fast"),
                                           restarts=1, max_epochs=2, n_train=100, draws=2,
                                           mc_restarts=0)  # fmt: skip
    else:  # what `wideflat committee --quick` runs
        data = "fashion" if locate_fashion_mnist(split="test") is not None else "teacher"
        cfg = committee.quick_study_config(data=data)
    rsgd = cfg.hparams("rsgd-fast")  # the resolved hyper-parameters of one algorithm
    print(f"{', '.join(cfg.algorithms)} on {cfg.data} data, {cfg.restarts} restarts, "
          f"<= {cfg.max_epochs} epochs; rsgd-fast: y={rsgd.y}, lr={rsgd.lr}, "
          f"gamma0={rsgd.gamma0}")  # fmt: skip

    results = committee.run_committee_study(
        cfg, args.out, resume=True, jobs=args.jobs, progress=not args.tiny
    )
    print(committee.format_study_table(results))
    if cfg.mc_restarts:
        print("BP against Monte Carlo (first restarts; flagged: off by > 2 MC standard errors):")
        print(committee.format_bp_mc_table(results))
    if cfg.quick and not args.tiny:
        print(committee.QUICK_READING)
    figure = plot_fig1(results, f"{args.out}/fig1.png")

    # One number out of the results: mean test error and δE_train(σ) per algorithm.
    sigma = cfg.table_sigma
    for name, block in results["algorithms"].items():
        test = [r["test_error"] for r in block["restarts"]]
        i = block["restarts"][0]["local_energy"]["sigma"].index(sigma)
        energy = [r["local_energy"]["mean"][i] for r in block["restarts"]]
        print(f"{name}: test error {sum(test) / len(test):.3f}, "
              f"dE_train(sigma={sigma}) {sum(energy) / len(energy):.3f}")  # fmt: skip
    print(f"wall-clock {results['wall_clock_s']:.0f} s; wrote {args.out}/results.json, {figure}")


if __name__ == "__main__":
    main()
