"""The study report: paper-style tables, figures and generated findings from demo or run directories."""

from .page import add_parser, write_report

__all__ = ["add_parser", "write_report"]
