-- Sluice classification corpus: reads written by hand (reporting, analytics,
-- admin dashboards) using the T-SQL that parsers find hard.
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
SELECT CustomerId, OrderDate, Total,
       SUM(Total) OVER (PARTITION BY CustomerId ORDER BY OrderDate ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS RunningTotal,
       LAG(Total, 1, 0) OVER (PARTITION BY CustomerId ORDER BY OrderDate) AS PrevTotal,
       NTILE(4) OVER (ORDER BY Total) AS Quartile,
       DENSE_RANK() OVER (ORDER BY Total DESC) AS Rnk
FROM dbo.Orders

-- expect: replica
SELECT *
FROM (
    SELECT Region, DATENAME(month, OrderDate) AS M, Total FROM dbo.Orders
) AS src
PIVOT (SUM(Total) FOR M IN ([January], [February], [March])) AS p

-- expect: replica
SELECT Id, Metric, Value
FROM dbo.Stats
UNPIVOT (Value FOR Metric IN (Views, Clicks, Buys)) AS u

-- expect: replica
SELECT c.Id, c.Name, last.OrderDate, last.Total
FROM dbo.Customers c
CROSS APPLY (
    SELECT TOP (1) o.OrderDate, o.Total FROM dbo.Orders o WHERE o.CustomerId = c.Id ORDER BY o.OrderDate DESC
) AS last

-- expect: replica
WITH org AS (
    SELECT Id, ManagerId, Name, 0 AS Depth FROM dbo.Employees WHERE ManagerId IS NULL
    UNION ALL
    SELECT e.Id, e.ManagerId, e.Name, org.Depth + 1 FROM dbo.Employees e JOIN org ON e.ManagerId = org.Id
)
SELECT * FROM org ORDER BY Depth, Name
OPTION (MAXRECURSION 100)

-- expect: replica
SELECT c.Id,
       STUFF((SELECT ',' + t.Name FROM dbo.Tags t JOIN dbo.CustomerTags ct ON ct.TagId = t.Id
              WHERE ct.CustomerId = c.Id FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), 1, 1, '') AS Tags
FROM dbo.Customers c

-- expect: replica
SELECT Id, Name, (SELECT Sku, Qty FROM dbo.OrderLines l WHERE l.OrderId = o.Id FOR JSON PATH) AS Lines
FROM dbo.Orders o
FOR JSON PATH, ROOT('orders'), INCLUDE_NULL_VALUES

-- expect: replica
SELECT Id FROM dbo.Customers WHERE Country = 'SE'
UNION
SELECT CustomerId FROM dbo.Orders WHERE Total > 1000
INTERSECT
SELECT Id FROM dbo.VipCustomers
EXCEPT
SELECT CustomerId FROM dbo.Blocked

-- expect: replica
SELECT Id FROM dbo.A WHERE X IN (
  SELECT X FROM dbo.B WHERE Y IN (
    SELECT Y FROM dbo.C WHERE Z IN (
      SELECT Z FROM dbo.D WHERE W IN (
        SELECT W FROM dbo.E WHERE V IN (
          SELECT V FROM dbo.F WHERE U IN (
            SELECT U FROM dbo.G WHERE T IN (
              SELECT T FROM dbo.H WHERE S IN (
                SELECT S FROM dbo.I WHERE R IN (
                  SELECT R FROM dbo.J WHERE Q = 'UPDATE'
                )
              )
            )
          )
        )
      )
    )
  )
)

-- expect: replica
SELECT Region, Product, SUM(Total) AS Total
FROM dbo.Sales
GROUP BY GROUPING SETS ((Region, Product), (Region), ())

-- expect: replica
SELECT Region, YEAR(OrderDate) AS Y, SUM(Total) FROM dbo.Orders GROUP BY ROLLUP (Region, YEAR(OrderDate))

-- expect: replica
SELECT Region, Channel, COUNT(*) FROM dbo.Orders GROUP BY CUBE (Region, Channel)

-- expect: replica
WITH XMLNAMESPACES ('urn:sluice' AS s)
SELECT Id AS '@id', Name AS 's:name' FROM dbo.Customers FOR XML PATH('s:customer'), ROOT('s:customers')

-- expect: replica
SELECT Doc.value('(/order/@id)[1]', 'int') AS OrderId, n.c.value('@sku', 'varchar(20)') AS Sku
FROM dbo.XmlOrders
CROSS APPLY Doc.nodes('/order/line') AS n(c)

-- expect: replica
SELECT TOP (@n) WITH TIES Name, Score FROM dbo.Leaderboard ORDER BY Score DESC

-- expect: replica
SELECT DISTINCT TOP 100 City FROM dbo.Addresses ORDER BY City

-- expect: replica
SELECT APPROX_COUNT_DISTINCT(UserId) AS Users, PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY Duration) OVER () AS Median
FROM dbo.Visits

-- expect: replica
SELECT Id, CASE
         WHEN Total >= 1000 THEN 'gold'
         WHEN Total >= 100 THEN 'silver'
         ELSE 'bronze'
       END AS Tier,
       DATEDIFF_BIG(millisecond, CreatedAt, ShippedAt) AS ShipMs,
       COALESCE(NULLIF(Note, ''), '(none)') AS Note
FROM dbo.Orders

-- expect: replica
SELECT o.Id, c.Name COLLATE Latin1_General_CI_AI AS Name
FROM dbo.Orders o
FULL OUTER JOIN dbo.Customers c ON c.Id = o.CustomerId
WHERE c.Name LIKE N'%ö%' COLLATE Latin1_General_CI_AI

-- expect: replica
SELECT * FROM dbo.Prices FOR SYSTEM_TIME BETWEEN '2024-01-01' AND '2024-02-01' WHERE Sku = 'A-1'

-- expect: replica
SELECT t.name AS TableName, SUM(p.rows) AS Rows
FROM sys.tables t JOIN sys.partitions p ON p.object_id = t.object_id AND p.index_id IN (0, 1)
GROUP BY t.name ORDER BY Rows DESC

-- expect: replica
-- why: A DMV read for a dashboard; nothing written.
SELECT TOP 20 qs.total_worker_time / qs.execution_count AS AvgCpu, SUBSTRING(st.text, 1, 200) AS Text
FROM sys.dm_exec_query_stats qs
CROSS APPLY sys.dm_exec_sql_text(qs.sql_handle) st
ORDER BY AvgCpu DESC

-- expect: replica
SELECT ft.[KEY], ft.[RANK], d.Title
FROM FREETEXTTABLE(dbo.Documents, Body, 'merge insert delete') AS ft
JOIN dbo.Documents d ON d.Id = ft.[KEY]

-- expect: replica
SELECT Id, Total FROM dbo.Orders ORDER BY Id OFFSET 100 ROWS

-- expect: replica
SELECT CAST(CreatedAt AS date) AS Day, COUNT(*) AS N
FROM dbo.Orders
WHERE CreatedAt >= DATEADD(day, -30, CAST(GETDATE() AS date))
GROUP BY CAST(CreatedAt AS date)
HAVING COUNT(*) > 10
ORDER BY Day

-- expect: replica
SELECT CHECKSUM_AGG(BINARY_CHECKSUM(*)) FROM dbo.Prices

-- expect: replica
SELECT Id, FIRST_VALUE(Price) OVER w AS First, LAST_VALUE(Price) OVER w AS Last
FROM dbo.PriceHistory
WINDOW w AS (PARTITION BY Sku ORDER BY ChangedAt ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)

-- expect: replica
SELECT GREATEST(a, b, c) AS g, LEAST(a, b, c) AS l, DATETRUNC(month, d) AS m FROM dbo.Triples

-- expect: replica
SELECT s.Id, s.Name
FROM dbo.Stores s
WHERE NOT EXISTS (SELECT 1 FROM dbo.Orders o WHERE o.StoreId = s.Id AND o.CreatedAt > DATEADD(month, -1, GETDATE()))
  AND s.Id = ANY (SELECT StoreId FROM dbo.ActiveStores)

-- expect: replica
SELECT [Order Id], [Customer Name], [Total $] FROM [dbo].[Order Details View] WHERE [Ship Country] = N'España'

-- expect: replica
-- why: A comment in the middle of a line, and a string containing a comment opener.
SELECT Id, /* the total */ Total, '/* not a comment' AS s, '-- nor this' AS t FROM dbo.Orders

-- expect: replica
select   Id ,Name
from	dbo.Customers
where  Name  like  'A%'   order by   Name

-- expect: replica
SELECT Id FROM dbo.Orders AS o WHERE o.Total > (SELECT AVG(Total) FROM dbo.Orders WHERE CustomerId = o.CustomerId)

-- expect: replica
SELECT LEFT(Name, 1) AS Initial, COUNT(*) AS N, MIN(Name) AS FirstName, MAX(Name) AS LastName
FROM dbo.Customers
GROUP BY LEFT(Name, 1)

-- expect: replica
-- why: Unicode identifiers in several scripts.
SELECT [客户].[名称], [Заказы].[Сумма]
FROM [客户]
JOIN [Заказы] ON [Заказы].[客户Id] = [客户].[Id]

-- expect: replica
-- why: An all-read batch with IF/ELSE, BEGIN/END and variables, no GO.
DECLARE @mode varchar(10) = 'summary';
IF @mode = 'summary'
BEGIN
    SELECT Region, SUM(Total) AS Total FROM dbo.Orders GROUP BY Region;
END
ELSE IF @mode = 'detail'
BEGIN
    SELECT * FROM dbo.Orders ORDER BY Region;
END
ELSE
    SELECT 'unknown mode' AS error;

-- expect: replica
EXEC ReportTopProducts 10

-- expect: replica
EXEC reporting.usp_SalesByMonth 2024
