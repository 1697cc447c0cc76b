-- Sluice classification corpus: SQL that Hibernate 5/6 (SQLServerDialect) and
-- Spring Data / Spring Batch send through mssql-jdbc, which names parameters
-- @P0, @P1, ...
--
-- Format (parsed by tests/classification.rs):
--   * Lines before the first "-- expect:" line are a header, like this one.
--   * An entry starts with a line "-- expect: replica" or "-- expect: primary".
--   * Optional "-- why: ..." lines may follow it immediately (reasoning).
--   * All following lines up to the next "-- expect:" line (or end of file)
--     are the SQL text of ONE batch, sent as-is (comments inside included);
--     leading and trailing blank lines are trimmed.
--   * replica: Classification::replica_eligible() must be true (a positive
--     read that nothing pins to the primary).
--     primary: it must be false (writes, write locks, session state that
--     lives on the primary, transaction control, anything unknown).
--   * Procedures declared read-only for the whole corpus are listed in
--     tests/corpus/read_only_procedures.txt.

-- expect: replica
select u1_0.id,u1_0.name from users u1_0 where u1_0.id=@P0

-- expect: replica
select u1_0.id,u1_0.email,u1_0.name,u1_0.version from users u1_0 where u1_0.email=@P0

-- expect: replica
select o1_0.id,o1_0.customer_id,o1_0.total from orders o1_0 order by o1_0.id offset @P0 rows fetch first @P1 rows only

-- expect: replica
select count(u1_0.id) from users u1_0 where u1_0.active=@P0

-- expect: replica
select o1_0.id,i1_0.order_id,i1_0.id,i1_0.sku,i1_0.quantity from orders o1_0 left join order_items i1_0 on o1_0.id=i1_0.order_id where o1_0.id=@P0

-- expect: replica
select u1_0.id,u1_0.name from users u1_0 where u1_0.id in (@P0,@P1,@P2,@P3)

-- expect: replica
-- why: Spring Data existsBy...().
select u1_0.id from users u1_0 where u1_0.email=@P0 order by (select 0) offset 0 rows fetch first @P1 rows only

-- expect: replica
select u1_0.id,u1_0.name from users u1_0 where u1_0.name like @P0 escape '\'

-- expect: replica
-- why: Hibernate 5 aliases and TOP(?).
select top(@P0) user0_.id as id1_0_, user0_.email as email2_0_, user0_.name as name3_0_ from users user0_ where user0_.active=@P1 order by user0_.name asc

-- expect: replica
-- why: Hibernate 5 pagination through a ROW_NUMBER() CTE.
WITH query AS (SELECT inner_query.*, ROW_NUMBER() OVER (ORDER BY CURRENT_TIMESTAMP) as __hibernate_row_nr__ FROM ( select TOP(@P0) order0_.id as id1_1_, order0_.total as total2_1_ from orders order0_ order by order0_.created desc ) inner_query ) SELECT id1_1_, total2_1_ FROM query WHERE __hibernate_row_nr__ >= @P1 AND __hibernate_row_nr__ < @P2

-- expect: replica
select c1_0.id,c1_0.name,(select count(*) from orders o1_0 where o1_0.customer_id=c1_0.id) from customers c1_0 where c1_0.country=@P0

-- expect: replica
select p1_0.category,avg(p1_0.price),max(p1_0.price) from products p1_0 group by p1_0.category having count(*)>@P0

-- expect: replica
select current_timestamp

-- expect: replica
select e1_0.id,e1_0.payload from events e1_0 where e1_0.created between @P0 and @P1 and e1_0.type in (@P2,@P3)

-- expect: replica
-- why: Spring Batch reading job metadata.
SELECT JOB_INSTANCE_ID, JOB_NAME from BATCH_JOB_INSTANCE where JOB_NAME = @P0 and JOB_KEY = @P1

-- expect: replica
-- why: A repository method mapped to a declared read-only procedure.
EXEC ReportTopProducts @P0

-- expect: primary
-- why: Sequence-based id generation consumes a sequence value.
select next value for users_seq

-- expect: primary
insert into users (email,name,version,id) values (@P0,@P1,@P2,@P3)

-- expect: primary
update users set email=@P0,name=@P1,version=@P2 where id=@P3 and version=@P4

-- expect: primary
delete from users where id=@P0 and version=@P1

-- expect: primary
-- why: LockModeType.PESSIMISTIC_WRITE (Hibernate 6).
select u1_0.id,u1_0.name from users u1_0 with (updlock,holdlock,rowlock) where u1_0.id=@P0

-- expect: primary
-- why: LockModeType.PESSIMISTIC_READ: HOLDLOCK keeps shared locks to the end of the primary's transaction.
select a1_0.id,a1_0.balance from accounts a1_0 with (holdlock,rowlock) where a1_0.id=@P0

-- expect: primary
-- why: PESSIMISTIC_WRITE with SKIP LOCKED.
select t1_0.id,t1_0.payload from tasks t1_0 with (updlock,holdlock,rowlock,readpast) where t1_0.state=@P0 order by t1_0.id offset 0 rows fetch first @P1 rows only

-- expect: primary
-- why: Hibernate 5 PESSIMISTIC_WRITE.
select account0_.id as id1_0_0_, account0_.balance as balance2_0_0_ from accounts account0_ with (updlock, rowlock) where account0_.id=@P0

-- expect: primary
-- why: TableGenerator reads its row with UPDLOCK then bumps it.
select tbl.next_val from hibernate_sequences tbl with (updlock, rowlock) where tbl.sequence_name=@P0

-- expect: primary
update hibernate_sequences set next_val=@P0 where next_val=@P1 and sequence_name=@P2

-- expect: primary
-- why: Hibernate 6 identity insert.
insert into orders (customer_id,total) output inserted.id values (@P0,@P1)

-- expect: primary
-- why: Hibernate 5 identity insert: the select is appended without a semicolon.
insert into orders (customer_id, total) values (@P0, @P1) select scope_identity()

-- expect: primary
-- why: @Modifying bulk JPQL update.
update orders set status=@P0 where created<@P1 and status=@P2

-- expect: primary
-- why: Bulk delete from a JPQL "delete from Order o where ...".
delete from order_items where order_id in (select o1_0.id from orders o1_0 where o1_0.status=@P0)

-- expect: primary
create table users (id bigint not null, email varchar(255), name varchar(255), version int not null, primary key (id))

-- expect: primary
create sequence users_seq start with 1 increment by 50

-- expect: primary
alter table order_items add constraint FKbioxgbv59vetrxe0ejfubep1w foreign key (order_id) references orders

-- expect: primary
-- why: Spring Batch id incrementer.
select next value for BATCH_JOB_SEQ

-- expect: primary
INSERT into BATCH_JOB_EXECUTION(JOB_EXECUTION_ID, JOB_INSTANCE_ID, START_TIME, END_TIME, STATUS, EXIT_CODE, EXIT_MESSAGE, VERSION, CREATE_TIME, LAST_UPDATED) values (@P0, @P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9)

-- expect: primary
-- why: mssql-jdbc sends Connection.setTransactionIsolation() as a batch: session state only, not a read.
set transaction isolation level serializable

-- expect: primary
-- why: Connection.setAutoCommit(false) on mssql-jdbc.
set implicit_transactions on

-- expect: primary
IF @@TRANCOUNT > 0 COMMIT TRAN

-- expect: primary
IF @@TRANCOUNT > 0 ROLLBACK TRAN

-- expect: primary
-- why: Spring Integration JDBC lock registry.
UPDATE INT_LOCK SET CLIENT_ID=@P0, CREATED_DATE=@P1 WHERE REGION=@P2 AND LOCK_KEY=@P3 AND (CLIENT_ID=@P4 OR CREATED_DATE<@P5)

-- expect: primary
-- why: Quartz acquires its trigger lock with UPDLOCK.
SELECT * FROM QRTZ_LOCKS WITH (UPDLOCK,ROWLOCK) WHERE SCHED_NAME = @P0 AND LOCK_NAME = @P1
