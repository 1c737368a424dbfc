//! Contract cases of device registration.

use std::collections::HashMap;
use std::future::Future;

use herald_core::device::device_id;
use herald_core::{Device, Platform};

use super::{Harness, Limits};

pub(super) fn device(user: &str, token: &str, registered_at: i64) -> Device {
    Device {
        id: device_id(Platform::Fcm, token),
        user: user.to_owned(),
        platform: Platform::Fcm,
        address: token.to_owned(),
        keys: None,
        app: None,
        locale: None,
        timezone: None,
        registered_at,
    }
}

fn addresses(devices: &[Device]) -> Vec<&str> {
    devices.iter().map(|d| d.address.as_str()).collect()
}

pub async fn devices_register_list_and_remove<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let phone = device("alice", "phone", 1_000);
    let tablet = device("alice", "tablet", 2_000);
    store.register_device(phone.clone()).await.unwrap();
    store.register_device(tablet.clone()).await.unwrap();
    assert_eq!(
        store.devices("alice").await.unwrap(),
        [tablet.clone(), phone.clone()],
        "most recently registered first"
    );
    let renewed = Device {
        locale: Some("de-DE".into()),
        registered_at: 3_000,
        ..phone.clone()
    };
    store.register_device(renewed.clone()).await.unwrap();
    assert_eq!(
        store.devices("alice").await.unwrap(),
        [renewed.clone(), tablet.clone()],
        "registering again renews the device, never duplicates it"
    );
    assert!(
        !store.remove_device("bob", &tablet.id).await.unwrap(),
        "only the owner removes a device"
    );
    assert!(store.remove_device("alice", &tablet.id).await.unwrap());
    assert!(!store.remove_device("alice", &tablet.id).await.unwrap());
    assert_eq!(store.devices("alice").await.unwrap(), [renewed]);
    assert!(store.devices("nobody").await.unwrap().is_empty());
}

pub async fn registering_a_known_address_moves_the_device<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    store
        .register_device(device("alice", "shared", 1_000))
        .await
        .unwrap();
    store
        .register_device(device("alice", "own", 1_500))
        .await
        .unwrap();
    let handed_over = device("bob", "shared", 2_000);
    store.register_device(handed_over.clone()).await.unwrap();
    assert_eq!(addresses(&store.devices("alice").await.unwrap()), ["own"]);
    assert_eq!(
        store.devices("bob").await.unwrap(),
        std::slice::from_ref(&handed_over),
        "the phone changed hands"
    );
    assert!(
        !store.remove_device("alice", &handed_over.id).await.unwrap(),
        "the previous owner no longer has it"
    );
    let both = store
        .devices_of(&["alice".into(), "bob".into()])
        .await
        .unwrap();
    let shared: Vec<_> = both.iter().filter(|d| d.address == "shared").collect();
    assert_eq!(shared, [&handed_over], "listed once, for its new owner");
    store
        .register_device(device("alice", "shared", 3_000))
        .await
        .unwrap();
    assert_eq!(
        addresses(&store.devices("alice").await.unwrap()),
        ["shared", "own"]
    );
    assert!(store.devices("bob").await.unwrap().is_empty());
}

pub async fn devices_per_user_keeps_the_most_recent<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits {
        devices_per_user: 3,
        ..Limits::default()
    })
    .await;
    let store = h.store();
    store
        .register_device(device("bob", "bob-phone", 500))
        .await
        .unwrap();
    let mut registered = Vec::new();
    for i in 0..5 {
        let d = device("alice", &format!("d{i}"), 1_000 + i);
        store.register_device(d.clone()).await.unwrap();
        registered.push(d);
    }
    assert_eq!(
        addresses(&store.devices("alice").await.unwrap()),
        ["d4", "d3", "d2"]
    );
    assert!(
        !store.prune_device(&registered[0].id).await.unwrap(),
        "a dropped device is gone, not just unlisted"
    );
    store
        .register_device(device("alice", "d2", 2_000))
        .await
        .unwrap();
    store
        .register_device(device("alice", "d5", 2_001))
        .await
        .unwrap();
    assert_eq!(
        addresses(&store.devices("alice").await.unwrap()),
        ["d5", "d2", "d4"],
        "the least recently registered goes first"
    );
    assert_eq!(
        addresses(&store.devices("bob").await.unwrap()),
        ["bob-phone"],
        "other users keep theirs"
    );
}

pub async fn devices_of_many_users_in_one_call<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let mut users: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    for user in &users {
        for (n, suffix) in ["a", "b"].iter().enumerate() {
            store
                .register_device(device(user, &format!("{user}-{suffix}"), n as i64))
                .await
                .unwrap();
        }
    }
    users.push("nobody".into());
    users.push("user-0".into());
    let got = store.devices_of(&users).await.unwrap();
    assert_eq!(
        got.len(),
        120,
        "each device once, duplicates in the request ignored"
    );
    let mut per_user: HashMap<&str, Vec<&str>> = HashMap::new();
    for d in &got {
        assert!(d.address.starts_with(&format!("{}-", d.user)));
        per_user
            .entry(d.user.as_str())
            .or_default()
            .push(d.address.as_str());
    }
    assert_eq!(per_user.len(), 60);
    for (user, addresses) in per_user {
        assert_eq!(
            addresses,
            [format!("{user}-b"), format!("{user}-a")],
            "newest first per user"
        );
    }
    assert!(store.devices_of(&[]).await.unwrap().is_empty());
}

pub async fn prune_device_removes_it_whoever_owns_it<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let first = device("alice", "dead-token", 1_000);
    store.register_device(first.clone()).await.unwrap();
    store
        .register_device(device("bob", "dead-token", 2_000))
        .await
        .unwrap();
    assert!(store.prune_device(&first.id).await.unwrap());
    assert!(store.devices("bob").await.unwrap().is_empty());
    assert!(store.devices("alice").await.unwrap().is_empty());
    assert!(!store.prune_device(&first.id).await.unwrap());
    store.register_device(first.clone()).await.unwrap();
    assert_eq!(
        store.devices("alice").await.unwrap(),
        [first],
        "a pruned address can be registered again"
    );
}
