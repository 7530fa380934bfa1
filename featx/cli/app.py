"""The ``featx`` group: turns featx's own errors into one-line messages."""

from __future__ import annotations

import os
import sys

import click

from featx.cli.flags import flags_of
from featx.cli.options import CONTEXT
from featx.errors import FeatxError, NoSpaceError, printable

__all__ = ["FeatxGroup", "main"]


class FeatxGroup(click.Group):
    """Turns featx's own errors into one-line messages and a non-zero exit."""

    #: Commands whose finished work survives an interruption and resumes.
    RESUMABLE = ("extract",)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NoSpaceError as exc:
            # HDF5 cannot be trusted to close cleanly after a failed write (it
            # crashed at exit in tests): say it, and leave without its clean-up.
            # Temporary files were removed and the lock goes with the process.
            click.echo(f"Error: {exc}", err=True)
            sys.stderr.flush()
            os._exit(1)
        except FeatxError as exc:
            raise click.ClickException(
                exc.for_cli(flags_of(ctx.invoked_subcommand))
            ) from exc
        except OSError as exc:
            # A fault of the machine (permissions, disk, a vanished file) that no
            # check above foresaw: one line, never a traceback.
            where = f" {printable(str(exc.filename))}" if exc.filename else ""
            raise click.ClickException(
                f"{exc.strerror or exc}:{where}" if where else str(exc)
            ) from exc
        except KeyboardInterrupt:
            if ctx.invoked_subcommand in self.RESUMABLE:
                message = (
                    "Interrupted. Every finished batch is kept in the cache; run the "
                    "same command again to resume."
                )
            else:
                message = "Interrupted; nothing was written."
            click.echo("\n" + message, err=True)
            sys.exit(130)


@click.group(cls=FeatxGroup, context_settings=CONTEXT)
@click.version_option(package_name="featx")
def main() -> None:
    """Pretrained features from any layer of AlexNet (the default) or any
    torchvision or timm network, cached in HDF5, and classical classifiers
    trained and compared on them.

    \b
    Typical session:
      featx extract --layer conv5 --layer fc7 --weights random data/Train data/Test
      featx fit --clf svm
      featx report
    """
