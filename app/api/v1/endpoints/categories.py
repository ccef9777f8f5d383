"""Ticket categories: every signed-in user reads them (customers pick one for a new ticket,
and see active ones only); admins create and change them.

There is no DELETE: tickets keep the category they were filed under, so a category that is
no longer wanted is deactivated (`PATCH {"is_active": false}`), which hides it from customers
and refuses it for new tickets and category changes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse

from app.api.v1.dependencies import AdminUser, CurrentUser, IdempotencyKey, PageDep, SessionDep, idempotent_create
from app.core.errors import (
    CategoryExists,
    CategoryNotFound,
    FieldNotAllowed,
    FieldProblem,
    Forbidden,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidReference,
    problem_responses,
)
from app.core.pagination import after_id, id_page
from app.crud import crud_category
from app.models.category import Category
from app.schemas.category import CategoryCreate, CategoryRead, CategoryUpdate
from app.schemas.common import Page
from app.services.ticket import is_staff

router = APIRouter(prefix="/categories", tags=["categories"])


@router.get("", response_model=Page[CategoryRead], responses=problem_responses(InvalidCursor, FieldNotAllowed))
async def list_categories(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    include_inactive: Annotated[bool, Query(description="staff only")] = False,
) -> Page[CategoryRead]:
    """Ordered by id; `parent_id` lets clients build the (one level deep) tree."""
    if include_inactive and not is_staff(user):
        raise FieldNotAllowed("include_inactive")
    rows = await crud_category.list_page(
        session, include_inactive=include_inactive, after_id=after_id(page.cursor), limit=page.limit
    )
    rows, next_cursor = id_page(rows, page.limit)
    return Page[CategoryRead](items=[CategoryRead.model_validate(c) for c in rows], next_cursor=next_cursor)


@router.get("/{category_id}", response_model=CategoryRead, responses=problem_responses(CategoryNotFound))
async def read_category(category_id: int, user: CurrentUser, session: SessionDep) -> Category:
    return await crud_category.get_visible(session, category_id, user)


@router.post(
    "",
    response_model=CategoryRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(
        Forbidden, CategoryExists, FieldProblem, InvalidReference, IdempotencyKeyReused, IdempotencyKeyInProgress
    ),
)
async def create_category(
    body: CategoryCreate,
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> Any:
        return CategoryRead.model_validate(await crud_category.create(session, body))

    return await idempotent_create(session, request, user=admin, key=idempotency_key, create=create)


@router.patch(
    "/{category_id}",
    response_model=CategoryRead,
    responses=problem_responses(Forbidden, CategoryNotFound, CategoryExists, FieldProblem, InvalidReference),
)
async def update_category(category_id: int, body: CategoryUpdate, admin: AdminUser, session: SessionDep) -> Category:
    category = await crud_category.get(session, category_id)
    return await crud_category.update(session, category, body)
