"""Wiring of the real objects for one process: settings, database and services.

The Streamlit UI caches one ``AppContext`` per process (``nexus_core.ui.resources``); the CLI builds
its own. Tests build one around a temporary data dir. A service's module is imported when the
service is first built, so a command that needs two services does not import the job pipeline,
Alembic or the workbench (``nexus usage`` starts in a fraction of the time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from nexus_core.settings import Settings, load_settings

if TYPE_CHECKING:
    from nexus_core.ai.jobs import ResponseWorker
    from nexus_core.ai.protocol import Provider
    from nexus_core.alerts.scheduler import AlertScheduler
    from nexus_core.alerts.service import AlertService
    from nexus_core.analytics.log_store import EventStore
    from nexus_core.ask.service import AskService
    from nexus_core.auth import SignInService
    from nexus_core.boards.service import BoardService
    from nexus_core.chat import ChatService
    from nexus_core.compare.runs import CompareService
    from nexus_core.compare.test_sets import TestSetService
    from nexus_core.cost.budgets import BudgetService
    from nexus_core.cost.prices import PriceService
    from nexus_core.db.engine import Database
    from nexus_core.eval.freeze import FreezeService
    from nexus_core.eval.runs import EvalService
    from nexus_core.feedback import FeedbackService
    from nexus_core.feedback.triage import TriageService
    from nexus_core.ops.events import ApiEventLogger, EventSink
    from nexus_core.ops.incidents import ErrorNotifierService
    from nexus_core.ops.prometheus import NexusMetrics
    from nexus_core.ops.telemetry import TraceEventSink
    from nexus_core.personas import PersonaService
    from nexus_core.privacy.personal_data import PersonalDataService
    from nexus_core.privacy.redaction import HeldOriginals, Redactor
    from nexus_core.privacy.retention import RetentionScheduler, RetentionService
    from nexus_core.users import UserService
    from nexus_core.workbench.notebooks import NotebookService
    from nexus_core.workbench.sandbox import Workbench


@dataclass
class InitReport:
    """What ``nexus init`` did."""

    personas_created: int
    admin_created: bool
    admin_password: str | None


@dataclass
class AppContext:
    """The settings plus lazily built services that share one database."""

    settings: Settings = field(default_factory=load_settings)

    @cached_property
    def db(self) -> Database:
        from nexus_core.db.engine import Database

        return Database(self.settings.database_url)

    @cached_property
    def users(self) -> UserService:
        from nexus_core.users import UserService

        return UserService(self.db)

    @cached_property
    def personal_data(self) -> PersonalDataService:
        """One person's data: export and erasure."""
        from nexus_core.privacy.personal_data import PersonalDataService

        return PersonalDataService(self.db)

    @cached_property
    def retention(self) -> RetentionService:
        """Removal of content and event-log files older than the retention settings."""
        from nexus_core.privacy.retention import RetentionService

        return RetentionService(
            self.db,
            self.event_store,
            content_days=self.settings.retain_content_days,
            events_days=self.settings.retain_events_days,
        )

    @cached_property
    def retention_scheduler(self) -> RetentionScheduler:
        """The daily retention run of this process (started by the app when a policy is set)."""
        from nexus_core.privacy.retention import RetentionScheduler

        return RetentionScheduler.for_service(self.retention)

    @cached_property
    def sign_in(self) -> SignInService:
        from nexus_core.auth import SignInService, resolve_cookie_key, session_lifetime
        from nexus_core.sso import RoleMapping

        return SignInService(
            self.db,
            token_key=resolve_cookie_key(self.settings),
            lifetime=session_lifetime(self.settings),
            roles=RoleMapping.from_settings(self.settings),
        )

    @cached_property
    def personas(self) -> PersonaService:
        from nexus_core.personas import PersonaService

        return PersonaService(self.db)

    @cached_property
    def chat(self) -> ChatService:
        from nexus_core.chat import ChatService

        return ChatService(
            self.db,
            max_message_chars=self.settings.max_message_chars,
            redactor=self.redactor,
            originals=self.held_originals,
        )

    @cached_property
    def redactor(self) -> Redactor:
        """What ``NEXUS_REDACT`` masks in stored messages and event fields."""
        from nexus_core.privacy.redaction import Redactor

        return Redactor.of(self.settings.redacted_kinds)

    @cached_property
    def held_originals(self) -> HeldOriginals | None:
        """Masked messages' typed text for the model (None: nothing masked, or
        ``NEXUS_REDACT_PROMPTS`` sends the model the masked text)."""
        from nexus_core.privacy.redaction import HeldOriginals

        if not self.redactor or self.settings.redact_prompts:
            return None
        return HeldOriginals()

    @cached_property
    def prices(self) -> PriceService:
        from nexus_core.cost.prices import PriceService

        return PriceService(self.db)

    @cached_property
    def budgets(self) -> BudgetService:
        from nexus_core.cost.budgets import BudgetService

        return BudgetService(self.db)

    @cached_property
    def feedback(self) -> FeedbackService:
        from nexus_core.feedback import FeedbackService

        return FeedbackService(self.db, redactor=self.redactor)

    @cached_property
    def triage(self) -> TriageService:
        """Exploring, triaging and exporting everyone's feedback (analysts and admins)."""
        from nexus_core.feedback.triage import TriageService

        return TriageService(self.db, redactor=self.redactor)

    @cached_property
    def notebooks(self) -> NotebookService:
        """The workbench's stored notebooks."""
        from nexus_core.workbench.notebooks import NotebookService

        return NotebookService(self.db)

    @cached_property
    def event_store(self) -> EventStore:
        """The event log as DuckDB reads it, one per process: the dashboard and the workbench."""
        from nexus_core.analytics.log_store import EventStore

        return EventStore.from_settings(self.settings)

    @cached_property
    def workbench(self) -> Workbench:
        """The workbench's query engine over the database and ``event_store``.

        It holds no query process itself: each run opens a ``WorkbenchSession`` (a snapshot and
        a query process of its own) and closes it when done, so one engine serves every browser
        session. Refused settings raise ``ConfigError`` on every use (nothing is cached).
        """
        from nexus_core.workbench.sandbox import Workbench

        return Workbench(self.settings, self.db, events=self.event_store)

    @cached_property
    def boards(self) -> BoardService:
        """Boards of pinned workbench results; pins run in ``workbench`` with the viewer's
        visibility."""
        from nexus_core.boards.service import BoardService

        return BoardService(self.db, self.workbench)

    @cached_property
    def ask(self) -> AskService:
        """Questions in plain words to draft SQL: the app's model writes them (the offline
        simulated model answers from templates); drafts run in ``workbench``."""
        from nexus_core.ask.service import AskService

        secrets = (self.settings.gemini_api_key, self.settings.openai_api_key)
        return AskService(self.db, self.workbench, self.provider, secrets=secrets)

    @cached_property
    def alerts(self) -> AlertService:
        """Alert rules, silences, webhooks, evaluation and history."""
        from datetime import timedelta

        from nexus_core.alerts.service import AlertService
        from nexus_core.alerts.webhooks import WebhookSender

        return AlertService(
            self.db,
            self.event_store,
            self.budgets,
            WebhookSender(self.settings.alert_webhook_secret),
            webhook_urls=self.settings.alert_webhooks,
            renotify=timedelta(minutes=self.settings.alert_renotify_minutes),
            public_url=self.settings.public_url,
        )

    @cached_property
    def alert_scheduler(self) -> AlertScheduler:
        """The once-a-minute evaluator of this process (started by the app, not by commands)."""
        from datetime import timedelta

        from nexus_core.alerts.scheduler import AlertScheduler

        interval = timedelta(seconds=self.settings.alert_interval_seconds)
        return AlertScheduler.for_service(self.alerts, interval)

    @cached_property
    def event_log(self) -> ApiEventLogger:
        from nexus_core.ops.events import ApiEventLogger

        return ApiEventLogger.from_settings(self.settings)

    @cached_property
    def metrics(self) -> NexusMetrics:
        """Prometheus metrics fed by the same events as the log; the gauges read the worker pool
        and the sign-in sessions at every scrape."""
        from nexus_core.ops.prometheus import NexusMetrics

        metrics = NexusMetrics()
        metrics.set_in_flight_source(lambda: float(self.worker.in_flight()))
        metrics.set_active_sessions_source(lambda: float(self.sign_in.active_sessions()))
        return metrics

    @cached_property
    def tracing(self) -> TraceEventSink | None:
        """OTLP/HTTP traces of AI jobs and of the evaluations of their replies when
        ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else None; dropped spans counted on /metrics."""
        endpoint = self.settings.otel_exporter_otlp_endpoint
        if not endpoint:
            return None
        from nexus_core.ops.telemetry import TraceEventSink, stored_explanations, stored_texts

        capture = self.settings.otel_capture_content
        return TraceEventSink.over_http(
            endpoint,
            service_name=self.settings.otel_service_name,
            content=stored_texts(self.db) if capture else None,
            explanations=stored_explanations(self.db) if capture else None,
            on_drop=self.metrics.count_dropped_spans,
        )

    @cached_property
    def events(self) -> EventSink:
        """Every event goes to the JSON-lines log, the Prometheus metrics and (when configured)
        the OpenTelemetry traces."""
        from nexus_core.ops.prometheus import FanoutSink, MetricsEventSink

        traces = [] if self.tracing is None else [self.tracing]
        return FanoutSink(self.event_log, MetricsEventSink(self.metrics), *traces)

    @cached_property
    def incidents(self) -> ErrorNotifierService:
        from nexus_core.ops.incidents import ErrorNotifierService

        return ErrorNotifierService(self.db, self.events)

    @cached_property
    def provider(self) -> Provider:
        """The app's provider (``NEXUS_AI_PROVIDER``): chat replies use it."""
        from nexus_core.ai.providers import build_provider

        return build_provider(self.settings)

    @cached_property
    def providers(self) -> dict[str, Provider]:
        """Every provider the settings make available, by name, built once (the app's among
        them): the choices of prompt comparisons and test-set runs."""
        from nexus_core.ai.providers import available_providers

        return available_providers(self.settings, self.provider)

    @cached_property
    def worker(self) -> ResponseWorker:
        """The process's AI jobs: its thread pools, where jobs a dead process left unfinished
        are failed first — or, with ``NEXUS_JOB_BACKEND=queue``, the queue that ``nexus worker``
        processes take them from (they also run them through this object)."""
        from nexus_core.ai.jobs import ResponseWorker
        from nexus_core.compare.variants import LANE_WORKERS
        from nexus_core.eval.runs import LANE_WORKERS as EVAL_LANE_WORKERS

        lanes = LANE_WORKERS | EVAL_LANE_WORKERS
        queued = {}
        if self.settings.job_backend == "queue":
            queued = self._job_queue(lanes)
        worker = ResponseWorker(
            self.db,
            self.provider,
            self.events,
            providers=self.providers,
            lanes=lanes,
            retry_base_seconds=self.settings.retry_base_seconds,
            budget_chars=self.settings.context_budget_chars,
            max_workers=self.settings.worker_threads,
            job_deadline_seconds=self.settings.job_deadline_seconds,
            originals=self.held_originals,
            redactor=self.redactor,
            **queued,
        )
        worker.recover_stale_jobs()
        return worker

    def _job_queue(self, lanes: Mapping[str, int]) -> dict[str, Any]:
        """The queue backend's ``queue`` and ``broker`` (Redis) for the ``ResponseWorker``."""
        from nexus_core.ai.lanes import CHAT_LANE
        from nexus_core.ai.queue import JobQueue, RedisJobBroker

        url, namespace = self.settings.broker_url or "", self.settings.queue_namespace
        queue = JobQueue.connect(
            url, namespace, self.settings.queue_redelivery_seconds, lanes, CHAT_LANE
        )
        return {"queue": queue, "broker": RedisJobBroker.from_url(url, namespace)}

    @cached_property
    def compare(self) -> CompareService:
        from nexus_core.compare.runs import CompareService

        return CompareService(
            self.db,
            self.worker,
            env=self.settings.env,
            max_message_chars=self.settings.max_message_chars,
        )

    @cached_property
    def test_sets(self) -> TestSetService:
        from nexus_core.compare.test_sets import TestSetService

        return TestSetService(self.db, self.worker, env=self.settings.env)

    @cached_property
    def freezer(self) -> FreezeService:
        from nexus_core.eval.freeze import FreezeService

        return FreezeService(
            self.db, self.test_sets, budget_chars=self.settings.context_budget_chars
        )

    @cached_property
    def evals(self) -> EvalService:
        from nexus_core.eval.runs import EvalService

        return EvalService(self.db, self.worker, self.test_sets, env=self.settings.env)

    def init(self) -> InitReport:
        """Create or upgrade the schema, seed personas, make sure an admin exists."""
        from nexus_core.db.migrate import upgrade_to_head

        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_to_head(self.db.engine)
        created = self.personas.seed_defaults()
        admin_created, password = self.users.ensure_admin(self.settings.admin_password)
        self.alerts.seed_defaults()
        return InitReport(created, admin_created, password)

    def _stop_schedulers(self) -> None:
        for name in ("alert_scheduler", "retention_scheduler"):
            if name in self.__dict__:
                self.__dict__[name].stop()

    def close(self) -> None:
        """Finish running jobs, then release the pool, the log and the database."""
        self._stop_schedulers()
        if "alerts" in self.__dict__:
            self.alerts.sender.close()
        if "worker" in self.__dict__:
            self.worker.shutdown(wait=True)
        built = list(self.__dict__.get("providers", {}).values())
        built += [self.__dict__["provider"]] if "provider" in self.__dict__ else []
        for provider in {id(p): p for p in built}.values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()
        if self.__dict__.get("tracing") is not None:
            self.tracing.shutdown()  # after the jobs: their last spans go out
        if "event_log" in self.__dict__:
            self.event_log.close()
        if "event_store" in self.__dict__:
            self.event_store.close()
        if "db" in self.__dict__:
            self.db.dispose()
