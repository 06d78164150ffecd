"""Spec: Config + YAML spec file -> GeneratorSpec, in one function (spec_file.generator_spec) every face calls."""
