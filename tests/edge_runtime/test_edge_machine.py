"""The machine description every benchmark JSON carries."""

from edge_runtime.machine import ISA_FLAGS, cpuinfo, machine_info


def test_cpuinfo_of_x86_and_arm(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum\nflags\t\t: fpu sse4_2 avx2 avx512f "
                   "avx512_vnni amx_bf16 amx_tile\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum\n")
    model, flags = cpuinfo(x86)
    assert model == "Intel(R) Xeon(R) Platinum" and {"avx2", "avx512_vnni", "amx_bf16"} <= flags
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp sve\nCPU part\t: 0xd0c\n")
    assert cpuinfo(arm)[1] >= {"asimd", "asimddp"}
    assert cpuinfo(tmp_path / "missing") == ("", set())


def test_machine_info_names_the_cpu_and_only_known_flags():
    info = machine_info()
    assert info["cpu"] and info["cores"] >= 1
    assert set(info["isa"]) <= set(ISA_FLAGS)
