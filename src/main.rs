fn main() {
    certdock_main();
}

fn certdock_main() {}
