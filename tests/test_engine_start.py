"""Learner start-up on CPU never depends on a compiled DeepSpeed kernel or its build cache."""

import os
import subprocess
import sys
import textwrap


def test_cpu_start_ignores_a_stale_extension_lock(tmp_path):
    # A build killed half-way leaves this lock; torch's extension loader waits on it forever.
    ext = tmp_path / "ext"
    lock_dir = ext / f"py{sys.version_info.major}{sys.version_info.minor}_cpu" / "deepspeed_shm_comm"
    lock_dir.mkdir(parents=True)
    (lock_dir / "lock").write_text("")
    script = textwrap.dedent("""
        import importlib
        ds_torch = importlib.import_module("deepspeed.comm.torch")
        from learner.engine import skip_cpu_shm_kernel
        skip_cpu_shm_kernel()
        assert ds_torch.build_shm_op() is None
        print("no kernel")
    """)
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(ext))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no kernel" in out.stdout
    assert (lock_dir / "lock").exists() and len(list(lock_dir.iterdir())) == 1  # nothing built
