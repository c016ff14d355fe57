import pytest

from ib import selectors
from ib.exceptions import IbError
from ib.models import Partner, PartnerMove, Referral
from ib.services import client_move, partner_move
from tests.factories import StaffFactory, TraderFactory
from tests.ib.factories import make_chain, make_partner, refer

pytestmark = pytest.mark.django_db


def staff_mover():
    from django.contrib.auth.models import Group

    staff = StaffFactory()
    staff.groups.add(Group.objects.get(name="Compliance"))
    return staff


def test_ancestors_and_subtree_at_depth_ten():
    chain = make_chain(10)
    bottom = Partner.objects.get(pk=chain[-1].pk)
    assert selectors.ancestor_ids(bottom) == [p.pk for p in reversed(chain[:-1])]
    top = Partner.objects.get(pk=chain[0].pk)
    assert set(selectors.subtree(top).values_list("pk", flat=True)) == {p.pk for p in chain}
    middle = Partner.objects.get(pk=chain[4].pk)
    assert set(selectors.subtree(middle, include_self=False).values_list("pk", flat=True)) == {
        p.pk for p in chain[5:]
    }
    assert bottom.depth == 10
    assert bottom.parent_partner_id == chain[-2].pk


def test_move_takes_the_subtree_and_is_recorded():
    a = make_chain(3)
    b = make_partner()
    staff = staff_mover()
    partner_move(actor=staff, partner=a[1], new_parent=b, reason="merged desks")
    moved = Partner.objects.get(pk=a[1].pk)
    below = Partner.objects.get(pk=a[2].pk)
    assert moved.parent_partner_id == b.pk
    assert selectors.ancestor_ids(below) == [a[1].pk, b.pk]
    assert not selectors.is_in_subtree(Partner.objects.get(pk=a[0].pk), below.pk)
    record = PartnerMove.objects.get(partner=moved)
    assert (record.old_parent_id, record.new_parent_id, record.actor) == (a[0].pk, b.pk, staff)


def test_move_into_own_subtree_is_refused():
    a = make_chain(4)
    with pytest.raises(IbError):
        partner_move(actor=staff_mover(), partner=a[1], new_parent=a[3])
    with pytest.raises(IbError):
        partner_move(actor=staff_mover(), partner=a[1], new_parent=a[1])
    assert Partner.objects.get(pk=a[3].pk).parent_partner_id == a[2].pk
    assert not PartnerMove.objects.exists()


def test_move_to_the_top():
    a = make_chain(3)
    partner_move(actor=staff_mover(), partner=a[2], new_parent=None)
    assert selectors.ancestor_ids(Partner.objects.get(pk=a[2].pk)) == []


def test_move_needs_the_permission():
    a = make_chain(2)
    b = make_partner()
    with pytest.raises(IbError):
        partner_move(actor=StaffFactory(), partner=a[1], new_parent=b)


def test_client_move_closes_the_old_attribution():
    a, b = make_partner(), make_partner()
    client = TraderFactory()
    refer(client, a)
    client_move(actor=staff_mover(), client=client, partner=b, reason="asked to")
    rows = list(Referral.objects.filter(client=client).order_by("since", "id"))
    assert [r.partner_id for r in rows] == [a.pk, b.pk]
    assert rows[0].until is not None and rows[1].until is None
    with pytest.raises(IbError):
        client_move(actor=staff_mover(), client=b.user, partner=b)
