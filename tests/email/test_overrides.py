"""Database overrides in `email_templates`: precedence over the files, validation when saved."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.core.errors import NotFound, ValidationError
from services.core.models import AuditLog, EmailTemplate
from services.email.operator import list_email_templates
from services.email.templates import delete_template_override, file_source, save_template_override
from tests.factories import make_owner

HTML = '{% extends "_layout.html" %}{% block content %}<p>Bonjour {{ userName }}</p>{% endblock %}'


@pytest.mark.commits
def test_override_row_wins_over_the_file_template(container, outbox) -> None:
    save_template_override(
        container, "email-verification", "Bienvenue {{ userName }}", HTML, "Bonjour {{ userName }}"
    )
    container.notifications.send_email("email-verification", "jane@example.com", {"userName": "Jane"})
    container.notifications.send_email("password-reset", "jane@example.com", {"userName": "Jane"})
    overridden, untouched = outbox.messages()
    assert overridden.subject == "Bienvenue Jane" and overridden.text.strip() == "Bonjour Jane"
    assert "<p>Bonjour Jane</p>" in overridden.html and "Sent by Codex" in overridden.html  # shared layout
    assert untouched.subject == "Reset your password"


@pytest.mark.commits
def test_override_html_is_autoescaped_too(container, outbox) -> None:
    save_template_override(container, "email-verification", None, HTML, None)
    container.notifications.send_email(
        "email-verification", "jane@example.com", {"userName": "<script>x</script>"}
    )
    [message] = outbox.messages()
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html
    assert message.subject == "Verify your email address"  # parts not given keep the file's source


@pytest.mark.commits
def test_parts_not_given_keep_the_file_source(container, session) -> None:
    save_template_override(container, "password-reset", "New subject", None, None)
    row = session.scalars(select(EmailTemplate).where(EmailTemplate.key == "password-reset")).one()
    assert row.subject == "New subject"
    assert row.html_body == file_source("password-reset", "html")
    assert row.text_body == file_source("password-reset", "text")


@pytest.mark.commits
def test_saving_twice_replaces_the_row(container, session) -> None:
    save_template_override(container, "password-reset", "One", None, None)
    save_template_override(container, "password-reset", "Two", None, None)
    rows = session.scalars(select(EmailTemplate)).all()
    assert [(r.key, r.subject) for r in rows] == [("password-reset", "Two")]


@pytest.mark.commits
def test_syntax_error_is_refused_at_save_with_the_line_number(container, session) -> None:
    text = "Hello {{ userName }}\n\n{% if resetUrl %}\n{{ resetUrl }\n{% endif %}\n"
    with pytest.raises(ValidationError) as err:
        save_template_override(container, "password-reset", None, None, text)
    assert "text body" in str(err.value) and "line 4" in str(err.value)
    assert session.scalars(select(EmailTemplate)).all() == []


def test_override_that_fails_to_render_is_refused(container) -> None:
    with pytest.raises(ValidationError, match="does not render"):
        save_template_override(container, "password-reset", "{{ userName.upper(1, 2, 3) }}", None, None)
    with pytest.raises(ValidationError, match="empty subject"):
        save_template_override(container, "password-reset", "{{ nothing }}", None, None)
    with pytest.raises(ValidationError, match="known templates"):
        save_template_override(container, "welcome", "Hi", None, None)


@pytest.mark.commits
def test_save_with_a_unit_of_work_leaves_the_commit_to_the_caller(container, session) -> None:
    with container.uow() as uow:
        save_template_override(uow, "password-reset", "Uncommitted", None, None)
    assert session.scalars(select(EmailTemplate)).all() == []
    with container.uow() as uow:
        save_template_override(uow, "password-reset", "Committed", None, None)
        uow.commit()
    assert session.scalars(select(EmailTemplate.subject)).all() == ["Committed"]


@pytest.mark.commits
def test_list_says_which_templates_are_overridden(container) -> None:
    save_template_override(container, "refund-confirmation", "Refund: {{ contentTitle }}", None, None)
    infos = {i.key: i for i in list_email_templates(container)}
    assert set(infos) == {"email-verification", "password-reset", "purchase-receipt", "refund-confirmation"}
    assert infos["refund-confirmation"].overridden and infos["refund-confirmation"].override_updated_at
    assert not infos["purchase-receipt"].overridden
    assert infos["purchase-receipt"].variables == [
        "customerName",
        "contentTitle",
        "amount",
        "purchaseDate",
        "accessUrl",
    ]


@pytest.mark.commits
def test_delete_override_is_audited_and_restores_the_file(container, session, outbox) -> None:
    owner = make_owner(session, email="ops@codex.test")
    session.commit()
    save_template_override(container, "password-reset", "Custom", None, None, by=owner.email, audited=True)
    assert delete_template_override(container, "password-reset", by=owner.email) is True
    with pytest.raises(NotFound):
        delete_template_override(container, "password-reset", by=owner.email)
    actions = session.scalars(select(AuditLog.action).order_by(AuditLog.at)).all()
    assert actions == ["email.override.save", "email.override.delete"]
    container.notifications.send_email("password-reset", "jane@example.com", {})
    assert outbox.messages()[0].subject == "Reset your password"
