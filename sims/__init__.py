"""The shipped experiment specs (one TOML file each; see README.md here), installed as the data
package ``genver.sims`` so that ``genver run NAME`` works from an installed wheel as well as from
a checkout (:mod:`genver.experiments.catalog`)."""
